"""Shared look-ups over a patient's facts (which course a dose belongs to, active courses)."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from operator import attrgetter
from types import MappingProxyType

from .calendar import add_months
from .config import RulesConfig
from .facts import Course, Dose, PlanInput
from .protocols import DMAB_ONCO, DMAB_OP, Protocol, protocols

__all__ = ["Context", "assign_courses"]


# (date, key): the order doses are sorted in, read in C.
_dose_order = attrgetter("given_on", "key")


def _given_on(d: Dose) -> date:
    return d.given_on


# (table, family, protocol, indication) -> the ids of the table's protocols that answer them. The
# table is one object per rules configuration (``protocols(config)``), kept with its answers so
# an id reused by another table cannot match.
_ids_found: dict[tuple[int, str | None, str | None, str | None], tuple[Mapping[str, Protocol], frozenset[str]]] = {}


def _protocol_ids(
    table: Mapping[str, Protocol], family: str | None, protocol: str | None, indication: str | None
) -> frozenset[str]:
    """The protocol ids ``doses_where`` keeps: known to ``table`` and matching every filter given."""
    question = (id(table), family, protocol, indication)
    found = _ids_found.get(question)
    if found is not None and found[0] is table:
        return found[1]
    ids = frozenset(
        key
        for key, p in table.items()
        if (family is None or p.family == family)
        and (protocol is None or p.id == protocol)
        and (indication is None or p.indication == indication)
    )
    if len(_ids_found) > 256:  # a long-lived process that saw many configurations
        _ids_found.clear()
    _ids_found[question] = (table, ids)
    return ids


def assign_courses(facts: PlanInput) -> dict[str, str | None]:
    """Dose key -> course key: the dose's own ``course_key``, else the latest course of the same
    protocol that started on or before the dose; consolidation doses without a course stay None."""
    result: dict[str, str | None] = {}
    for dose in facts.doses:
        if dose.course_key is not None:
            result[dose.key] = dose.course_key
            continue
        candidates = [c for c in facts.courses if c.protocol == dose.protocol and c.start_date <= dose.given_on]
        best = max(candidates, key=lambda c: c.start_date) if candidates else None
        result[dose.key] = best.key if best else None
    return result


@dataclass(frozen=True, slots=True, init=False)
class Context:
    facts: PlanInput
    today: date
    config: RulesConfig
    table: Mapping[str, Protocol]
    dose_course: Mapping[str, str | None]
    # The doses in (date, key) order, sorted once: the rules ask for them a dozen times a plan.
    doses: tuple[Dose, ...]
    by_course: Mapping[tuple[str | None, str], tuple[Dose, ...]]
    # The last day of the plan's horizon, asked for once per projected item.
    horizon_end: date
    # ``doses_where`` answers by its arguments: the rules ask the same questions per item
    # (gates on ``today``), each a walk over ten years of doses.
    _found: dict[tuple[str | None, str | None, str | None, date | None], tuple[Dose, ...]]

    def __init__(
        self,
        facts: PlanInput,
        today: date,
        config: RulesConfig,
        table: Mapping[str, Protocol],
        dose_course: Mapping[str, str | None],
        doses: tuple[Dose, ...],
        by_course: Mapping[tuple[str | None, str], tuple[Dose, ...]],
        horizon_end: date,
        _found: dict[tuple[str | None, str | None, str | None, date | None], tuple[Dose, ...]],
    ) -> None:
        object.__setattr__(self, "facts", facts)
        object.__setattr__(self, "today", today)
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "dose_course", dose_course)
        object.__setattr__(self, "doses", doses)
        object.__setattr__(self, "by_course", by_course)
        object.__setattr__(self, "horizon_end", horizon_end)
        object.__setattr__(self, "_found", _found)

    @classmethod
    def build(cls, facts: PlanInput, today: date, config: RulesConfig) -> Context:
        dose_course = assign_courses(facts)
        doses = tuple(sorted(facts.doses, key=_dose_order))
        by_course: defaultdict[tuple[str | None, str], list[Dose]] = defaultdict(list)
        for d in doses:
            by_course[dose_course.get(d.key), d.protocol].append(d)
        grouped = {k: tuple(v) for k, v in by_course.items()}
        horizon_end = add_months(today, config.horizon_months)
        table = protocols(config)
        return cls(facts, today, config, table, dose_course, doses, MappingProxyType(grouped), horizon_end, {})

    def course(self, key: str | None) -> Course | None:
        return next((c for c in self.facts.courses if c.key == key), None)

    def doses_of(self, course: Course, *, before: date | None = None) -> tuple[Dose, ...]:
        """Doses of ``course`` in date order (strictly before ``before`` when given)."""
        found = self.by_course.get((course.key, course.protocol), ())
        if before is None:
            return found
        return found[: bisect_left(found, before, key=_given_on)]

    def doses_where(
        self,
        *,
        family: str | None = None,
        protocol: str | None = None,
        indication: str | None = None,
        before: date | None = None,
    ) -> tuple[Dose, ...]:
        question = (family, protocol, indication, before)
        answer = self._found.get(question)
        if answer is None:
            answer = self._found[question] = self._doses_where(family, protocol, indication, before)
        return answer

    def _doses_where(
        self, family: str | None, protocol: str | None, indication: str | None, before: date | None
    ) -> tuple[Dose, ...]:
        ids = _protocol_ids(self.table, family, protocol, indication)
        doses = self.doses
        if before is not None:
            doses = doses[: bisect_left(doses, before, key=_given_on)]
        return tuple([d for d in doses if d.protocol in ids])

    def switch_date(self, course: Course) -> date | None:
        """DUP-01: the date an osteoporosis denosumab course was superseded by an oncology one."""
        if course.protocol != DMAB_OP:
            return None
        starts = [
            c.start_date
            for c in self.facts.courses
            if c.protocol == DMAB_ONCO
            and c.start_date >= course.start_date
            and (course.stop is None or c.start_date <= course.stop.date)
        ]
        return min(starts) if starts else None

    def active_on(self, course: Course, day: date) -> bool:
        """A course is active from its start until its stop date (exclusive) or OP→onco switch."""
        if course.start_date > day:
            return False
        if course.stop is not None and day >= course.stop.date:
            return False
        switched = self.switch_date(course)
        return switched is None or day < switched

    def active_courses(
        self, day: date, *, family: str | None = None, protocol: str | None = None
    ) -> tuple[Course, ...]:
        found = []
        for c in self.facts.courses:
            p = self.table.get(c.protocol)
            if p is None or (family is not None and p.family != family):
                continue
            if protocol is not None and c.protocol != protocol:
                continue
            if self.active_on(c, day):
                found.append(c)
        return tuple(found)
