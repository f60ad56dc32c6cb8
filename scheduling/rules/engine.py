"""The planner: ``compute_plan(facts, today=…, config=…) -> Plan``.

Items cover today through today + ``horizon_months`` (24) plus anything overdue. Item keys are
stable identities ("injection:<course>:<ordinal>", "consolidation:<course>",
"calcium_check:<course>:<ordinal>:<tag>", "vitamin_d_dose:<course>:<ordinal>", …) so re-planning
with unchanged facts gives the same keys, and an item keeps its key when its date moves.

Gates (CA-03/04/05, VITD-04, DENT-01/02, ONC-00, ZOL-03, CONS-04, DUP-01) are evaluated on
``today`` for every administration item that could be given today (window open, due, overdue);
blocking flags go to ``blocked_by``; a ``window_open`` or ``due`` item becomes ``blocked`` while an
overdue item keeps ``overdue_Lk`` (see ``items``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from operator import attrgetter

from .config import RulesConfig
from .context import Context
from .courses import CoursePlan, plan_course
from .facts import PlanInput
from .flags import SEVERITY_ORDER, Flag
from .followups import calcium_checks, dental_visits, plan_vitamin_d, pre_dose_calcium, reevaluations
from .gates import evaluate_gates, gates_in_context
from .items import ACTIONABLE, Plan, PlanItem
from .labs import summarise
from .patient_flags import patient_flags
from .protocols import VITD

__all__ = ["Plan", "PlanItem", "compute_plan", "evaluate_gates"]

_ADMINISTRATIONS = ("injection", "consolidation", "vitamin_d_dose")
_PARENTERAL_KINDS = ("injection", "consolidation")
# A plan's items in (due, key) order, the key read in C.
_plan_order = attrgetter("due", "key")


def _actionable(status: str) -> bool:
    """``PlanItem.actionable`` on a status: window open, due, overdue or blocked."""
    return status in _ACTIONABLE_STATUSES or status.startswith("overdue")


_ACTIONABLE_STATUSES = frozenset((*ACTIONABLE, "blocked"))


def compute_plan(facts: PlanInput, *, today: date, config: RulesConfig) -> Plan:
    """The whole plan for one patient on the local date ``today`` (pure, deterministic)."""
    ctx = Context.build(facts, today, config)
    out = CoursePlan()
    for course in facts.courses:
        sub = plan_course(ctx, course)
        out.items += sub.items
        out.flags += sub.flags
        calcium_checks(ctx, course, out)
        if course.protocol == VITD:
            plan_vitamin_d(ctx, course, out)
    # CA-05 / OP-02: pre-dose calcium for the next administration of each parenteral course.
    table = ctx.table
    nexts: dict[tuple[str | None, str], PlanItem] = {}
    parenteral = [
        item
        for item in out.items
        if item.kind in _PARENTERAL_KINDS
        and item.protocol is not None
        and table[item.protocol].parenteral_antiresorptive
    ]
    for item in sorted(parenteral, key=_plan_order):
        nexts.setdefault((item.course_key, item.kind), item)
    for item in nexts.values():
        check = pre_dose_calcium(ctx, item)
        if check is not None:
            out.items.append(check)
    dental_visits(ctx, out)
    reevaluations(ctx, out)
    patient_flags(ctx, out)

    items: list[PlanItem] = []
    flags: list[Flag] = list(out.flags)
    for item in out.items:
        if item.kind in _ADMINISTRATIONS and item.protocol and _actionable(item.status):
            owner = None if item.kind == "consolidation" else ctx.course(item.course_key)
            first = None if item.kind == "injection" else False
            gated = gates_in_context(ctx, ctx.table[item.protocol], owner, today, subject=item.key, first=first)
            flags += gated
            blockers = tuple(dict.fromkeys(f.code for f in gated if f.blocks))
            if blockers:
                # window_open / due become `blocked`; an overdue item keeps its ladder status so
                # escalation stays visible, with the blocks listed in `blocked_by`.
                status = "blocked" if item.status in ("window_open", "due") else item.status
                item = replace(item, status=status, blocked_by=blockers)
        items.append(item)
    return Plan(
        items=tuple(sorted(items, key=_plan_order)),
        flags=_finalise(flags),
        labs=summarise(facts.patient, facts.labs, on=today, config=config),
    )


def _finalise(flags: list[Flag]) -> tuple[Flag, ...]:
    """Dedupe on (code, subject); a patient-level copy is dropped when a subject carries it."""
    with_subject = {f.code for f in flags if f.subject is not None}
    seen: set[tuple[str, str | None]] = set()
    out: list[Flag] = []
    for f in flags:
        ident = (f.code, f.subject)
        if ident in seen or (f.subject is None and f.code in with_subject):
            continue
        seen.add(ident)
        out.append(f)
    return tuple(sorted(out, key=lambda f: (-SEVERITY_ORDER[f.severity], f.rule, f.code, f.subject or "")))
