"""Adherence: was each dose given inside its due window? Pure Python over plain values, like the rules.

"Inside the window" uses the protocol table (``scheduling.rules.protocols``), so the pages and the
plan agree on what on time means:

- a periodic dose (denosumab 60 mg OP-01/OP-03, denosumab 120 mg ONC-01, zoledronic acid 4 mg
  ZOL-01/ZOL-04) is due one interval after the previous dose of the same course (TIME-02: the actual
  date given anchors the next one) and is on time from ``due - window_before_days`` to
  ``due + window_after_days`` (OP: ±21 days; oncology: the reminder week before, the L1 week(s) after);
- the zoledronic acid 5 mg consolidation (CONS-01) is due 6 months after the last denosumab 60 mg
  dose, or on the stop date if later, with the OP window (±21 days);
- a course's first dose has nothing to be late against and is not counted; oral and vitamin D
  doses are not injections and are not counted either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import pairwise

from scheduling.rules.calendar import add_days, add_months
from scheduling.rules.config import RulesConfig
from scheduling.rules.protocols import DMAB_ONCO, DMAB_OP, ZOL_ONCO, ZOL_OP, Interval, protocols

__all__ = ["COUNTED_PROTOCOLS", "CourseFact", "DoseFact", "DoseWindow", "adherence_share", "dose_windows"]

PERIODIC = (DMAB_OP, DMAB_ONCO, ZOL_ONCO)
COUNTED_PROTOCOLS = (DMAB_OP, DMAB_ONCO, ZOL_ONCO, ZOL_OP)
QUARTERLY_RESPONSES = ("complete", "good", "oligometastatic")  # ZOL-04


@dataclass(frozen=True, slots=True)
class CourseFact:
    key: str
    protocol: str
    stop_date: date | None = None
    response: str | None = None


@dataclass(frozen=True, slots=True)
class DoseFact:
    key: str
    protocol: str
    given_on: date
    course_key: str | None = None
    patient_key: str = ""


@dataclass(frozen=True, slots=True)
class DoseWindow:
    dose: DoseFact
    due: date
    window_start: date
    window_end: date

    @property
    def inside(self) -> bool:
        return self.window_start <= self.dose.given_on <= self.window_end

    @property
    def late(self) -> bool:
        return self.dose.given_on > self.window_end

    @property
    def early(self) -> bool:
        return self.dose.given_on < self.window_start

    @property
    def days_from_due(self) -> int:
        return (self.dose.given_on - self.due).days


def _interval(protocol: str, course: CourseFact | None, config: RulesConfig) -> Interval | None:
    if protocol == ZOL_ONCO and course is not None and course.response in QUARTERLY_RESPONSES:
        return Interval(months=3)
    return protocols(config)[protocol].interval


def dose_windows(doses: Iterable[DoseFact], courses: Sequence[CourseFact], *, config: RulesConfig) -> list[DoseWindow]:
    """The due window of every counted dose (first doses of a course excluded), in date order."""
    table = protocols(config)
    by_course = {c.key: c for c in courses}
    chains: dict[tuple[str, str], list[DoseFact]] = defaultdict(list)
    dmab_op: dict[str, list[DoseFact]] = defaultdict(list)
    consolidations: list[DoseFact] = []
    for dose in sorted(doses, key=lambda d: (d.given_on, d.key)):
        if dose.protocol in PERIODIC:
            chains[(dose.patient_key, dose.course_key or dose.protocol)].append(dose)
        if dose.protocol == DMAB_OP:
            dmab_op[dose.patient_key].append(dose)
        elif dose.protocol == ZOL_OP:
            consolidations.append(dose)
    out: list[DoseWindow] = []
    for chain in chains.values():
        for previous, dose in pairwise(chain):
            course = by_course.get(dose.course_key or "")
            interval = _interval(dose.protocol, course, config)
            if interval is None:
                continue
            p = table[dose.protocol]
            due = interval.after(previous.given_on)
            out.append(DoseWindow(dose, due, add_days(due, -p.window_before_days), add_days(due, p.window_after_days)))
    p = table[ZOL_OP]
    for dose in consolidations:
        before = [d for d in dmab_op[dose.patient_key] if d.given_on < dose.given_on]
        if not before:
            continue
        last = before[-1]
        stopped = by_course.get(last.course_key or "")
        due = add_months(last.given_on, 6)
        if stopped is not None and stopped.stop_date is not None and stopped.stop_date > due:
            due = stopped.stop_date
        out.append(DoseWindow(dose, due, add_days(due, -p.window_before_days), add_days(due, p.window_after_days)))
    out.sort(key=lambda w: (w.dose.given_on, w.dose.key))
    return out


def adherence_share(windows: Iterable[DoseWindow], *, since: date, until: date) -> tuple[int, int]:
    """(doses inside their window, doses counted) among doses given from ``since`` to ``until``."""
    counted = [w for w in windows if since <= w.dose.given_on <= until]
    return sum(1 for w in counted if w.inside), len(counted)
