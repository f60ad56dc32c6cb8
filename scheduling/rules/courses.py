"""Per-course planning: denosumab 60 mg (OP-01..08), denosumab 120 mg (ONC-01..03, ONC-07),
zoledronic acid 4 mg (ZOL-01, ZOL-02, ZOL-04, ZOL-08) and consolidation (CONS-01..05).

Decision (CONS-01 "due today"): a consolidation's due date is the later of
add_months(last denosumab, 6) and the day it became required (the stop date for OP-08, D + 113 for
OP-04 L4). That is "today" on the day it triggers, and it stays fixed afterwards so the CONS-05
ladder can run from it. ONC-07 uses the same rule with last + interval (P9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .calendar import add_days, add_months
from .context import Context
from .facts import Course, Dose
from .flags import Flag, make_flag
from .items import PlanItem, Timing, item_at, make_item, timing_of
from .labs import CTX_EARLY_SECOND_ZOL_NG_ML, crcl_on, to_canonical, zoledronic_dose_mg
from .protocols import (
    ALENDRONATE,
    CHECK_LADDER,
    DMAB_ONCO,
    DMAB_OP,
    ZOL_ONCO,
    ZOL_OP,
    Interval,
    Protocol,
)

__all__ = ["CoursePlan", "plan_course", "protocol_timing"]

QUARTERLY_RESPONSES = ("complete", "good", "oligometastatic")  # ZOL-04


@dataclass
class CoursePlan:
    items: list[PlanItem] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)


def protocol_timing(p: Protocol) -> Timing:
    return timing_of(p.reminder_days, p.window_before_days, p.window_after_days, p.window_status, p.escalation)


def plan_course(ctx: Context, course: Course) -> CoursePlan:
    if course.protocol == DMAB_OP:
        return _plan_denosumab(ctx, course, ctx.table[DMAB_OP], ctx.table[DMAB_OP].interval)
    if course.protocol == DMAB_ONCO:
        out = CoursePlan()
        if course.requested_interval_months:
            # ONC-03: spacing denosumab 120 mg is refused; the base interval is kept.
            out.flags.append(
                make_flag(
                    "DMAB_ONC_SPACING_NOT_SUPPORTED",
                    "ONC-03",
                    "W",
                    subject=course.key,
                    requested=course.requested_interval_months,
                )
            )
        sub = _plan_denosumab(ctx, course, ctx.table[DMAB_ONCO], ctx.table[DMAB_ONCO].interval)
        out.items += sub.items
        out.flags += sub.flags
        return out
    if course.protocol == ZOL_ONCO:
        return _plan_zoledronic(ctx, course)
    return CoursePlan()  # vitamin D: followups.plan_vitamin_d; consolidations hang off denosumab


def _ladder_flags(item: PlanItem, p: Protocol) -> list[Flag]:
    """The flags of the rung reached (OP-04, ONC-02, ZOL-08, CONS-05)."""
    if item.level is None:
        if item.status in ("reminder", "window_open"):
            # OP-02 / ONC-02 / ZOL-08 (CONS-05 for consolidations): book and order the calcium.
            rule = {DMAB_OP: "OP-02", DMAB_ONCO: "ONC-02", ZOL_ONCO: "ZOL-08"}.get(p.id, "CONS-05")
            return [make_flag("INJECTION_REMINDER", rule, "I", subject=item.key, due=item.due)]
        return []
    level = next(lvl for lvl in p.escalation if lvl.level == item.level)
    rule = {DMAB_OP: "OP-04", DMAB_ONCO: "ONC-02", ZOL_ONCO: "ZOL-08"}.get(p.id, "CONS-05")
    # No ``days_late`` among the params: it moves every day, and the item carries it (not stored:
    # readers count it from the status and due date, ``items.days_late_on``).
    return [
        make_flag(code, rule, level.severity, subject=item.key, due=item.due, level=item.level)
        for code in level.flag_codes
    ]


def _project(
    ctx: Context,
    course: Course,
    p: Protocol,
    interval: Interval,
    anchor: date | None,
    done: int,
    end: date | None,
    dose_mg: float | None,
) -> list[PlanItem]:
    """Pending administrations: anchor + k·interval (TIME-02, no chaining) up to the horizon;
    the first dose of a course is due on its start date. Items on/after ``end`` are cancelled."""
    timing = protocol_timing(p)
    dues: list[date] = []
    if anchor is None:
        dues.append(course.start_date)
        anchor, k0 = course.start_date, 1
    else:
        k0 = 1
    k = k0
    while True:
        due = interval.after(anchor, k)
        if due > ctx.horizon_end:
            break
        dues.append(due)
        k += 1
    items = []
    for i, due in enumerate(dues):
        if end is not None and due >= end:
            break
        if i > 0 and due > ctx.horizon_end:
            break
        ordinal = done + i + 1
        key = f"injection:{course.key}:{ordinal}"
        item = item_at(
            key, "injection", due, ctx.today, timing, p.rule, p.id, course.key, ordinal, dose_mg, p.product, None,
            p.notification_offsets,
        )  # fmt: skip
        items.append(item)
    return items


def _effective_end(ctx: Context, course: Course) -> date | None:
    """Stop (OP-08 / ONC-07) or OP→onco switch (DUP-01): nothing pending from that day; a stop
    already reached cancels everything still pending."""
    ends = [d for d in (course.stop.date if course.stop else None, ctx.switch_date(course)) if d]
    if not ends:
        return None
    end = min(ends)
    return date.min if end <= ctx.today else end


def _plan_denosumab(ctx: Context, course: Course, p: Protocol, interval: Interval | None) -> CoursePlan:
    assert interval is not None
    out = CoursePlan()
    doses = ctx.doses_of(course)
    last = doses[-1].given_on if doses else None
    end = _effective_end(ctx, course)
    items = _project(ctx, course, p, interval, last, len(doses), end, p.dose_mg)
    switched = ctx.switch_date(course)
    if course.protocol == DMAB_OP and len(doses) >= 2:
        # OP-03: the last injection came before the previous D - 21; recorded anyway.
        expected = add_months(doses[-2].given_on, 6)
        if doses[-1].given_on < add_days(expected, -ctx.config.op_window_days):
            out.flags.append(make_flag("EARLY_INJECTION", "OP-03", "I", subject=course.key, due=expected))
    if course.protocol == DMAB_OP and end is None:
        # OP-05: patient education at prescription and the rebound window for clinicians.
        out.flags.append(
            make_flag(
                "REBOUND_RISK",
                "OP-05",
                "W",
                subject=course.key,
                overdue=bool(items and items[0].days_late),
                rebound_from=add_months(last, 7) if last else None,
                rebound_to=add_months(last, 20) if last else None,
            )
        )
        out.flags.append(make_flag("CALCIUM_VITD_INTAKE", "OP-07", "I", subject=course.key))
    if items and last is not None and items[0].level == "L4" and course.protocol == DMAB_OP:
        # OP-04 L4 (≥ D+113): discontinuation presumed, consolidation due the same day (CONS-01);
        # later denosumab projections are dropped.
        first = items[0]
        out.items.append(first)
        out.flags += _ladder_flags(first, p)
        out.items += _consolidation(ctx, course, last, first.escalation["L4"], ZOL_OP, out)
        return out
    if items:
        out.flags += _ladder_flags(items[0], p)
    out.items += items
    if end is not None and last is not None:
        if switched is not None and (course.stop is None or switched <= course.stop.date):
            # DUP-01: switch to oncology, RANKL inhibition continues: no consolidation.
            out.flags.append(
                make_flag("DMAB_SWITCH_NO_CONSOLIDATION", "DUP-01", "I", subject=course.key, date=switched)
            )
        elif course.stop is not None:
            out.flags.append(make_flag("DMAB_STOPPED", "OP-08", "H", subject=course.key, date=course.stop.date))
            if course.protocol == DMAB_OP:
                cons = course.stop.consolidation or ZOL_OP
                out.items += _consolidation(ctx, course, last, course.stop.date, cons, out)
            else:
                out.items += _onco_consolidation(ctx, course, p, last, course.stop.date, out)
    return out


def _bisphosphonate_after(ctx: Context, last_dmab: date) -> tuple[Dose, ...]:
    return tuple(d for d in ctx.doses_where(family="bisphosphonate") if d.given_on > last_dmab)


def _consolidation(
    ctx: Context, course: Course, last: date, required_on: date, protocol: str, out: CoursePlan
) -> list[PlanItem]:
    """CONS-01 (zoledronic acid 5 mg) or CONS-03 (alendronate) after denosumab 60 mg; CONS-02
    CTX checks once the infusion is given; CONS-05 ladder while it is not."""
    p = ctx.table[protocol]
    due = max(add_months(last, 6), required_on)
    given = _bisphosphonate_after(ctx, last)
    months = ctx.config.oral_consolidation_months
    if not given:
        rule = "CONS-03" if protocol == ALENDRONATE else "CONS-01"
        item = make_item(
            key=f"consolidation:{course.key}",
            ordinal=1,
            kind="consolidation",
            due=due,
            today=ctx.today,
            timing=protocol_timing(p),
            rule=rule,
            protocol=p.id,
            course_key=course.key,
            dose_mg=p.dose_mg,
            product=p.product,
            notification_offsets=p.notification_offsets,
            until=add_months(due, months) if protocol == ALENDRONATE else None,
        )
        out.flags.append(
            make_flag("CONSOLIDATION_REQUIRED", "CONS-01", "H", subject=item.key, due=due, protocol=protocol)
        )
        if protocol == ALENDRONATE:
            out.flags.append(make_flag("ORAL_CONSOLIDATION", "CONS-03", "H", subject=item.key, months=months))
        out.flags += _ladder_flags(item, p)
        return [item]
    first = given[0]
    if first.protocol == ALENDRONATE:
        end = add_months(first.given_on, months)
        out.flags.append(make_flag("ORAL_CONSOLIDATION", "CONS-03", "I", subject=course.key, months=months))
        return [
            _check(ctx, f"reevaluation:{course.key}:oral_end", "reevaluation", end, "CONS-03", course.key, (28, 28, 28))
        ]
    return _ctx_checks(ctx, course, first.given_on, out)


def _ctx_checks(ctx: Context, course: Course, infusion: date, out: CoursePlan) -> list[PlanItem]:
    """CONS-02: CTX at infusion + 3, 6, 9, 12 months; CTX > 0.300 ng/mL -> EARLY_SECOND_ZOL."""
    items = []
    ctx_labs = sorted(
        (lab for lab in ctx.facts.labs if lab.test == "ctx" and infusion < lab.date <= ctx.today),
        key=lambda lab: lab.date,
    )
    for k in range(1, 5):
        due = add_months(infusion, 3 * k)
        item = _check(
            ctx, f"ctx_check:{course.key}:{k}", "ctx_check", due, "CONS-02", course.key, (14, 14, 14), ordinal=k
        )
        done = any(
            lab.date >= item.window_start
            for lab in ctx_labs
            if lab.date < add_days(add_months(infusion, 3 * k + 3), -14)
        )
        if not done:
            items.append(item)
    high = [lab for lab in ctx_labs if to_canonical("ctx", lab.value, lab.unit) > CTX_EARLY_SECOND_ZOL_NG_ML]
    if high:
        lab = high[-1]
        out.flags.append(
            make_flag(
                "EARLY_SECOND_ZOL",
                "CONS-02",
                "H",
                subject=course.key,
                ctx=round(to_canonical("ctx", lab.value, lab.unit), 3),
                date=lab.date,
            )
        )
    return _relevant(items, ctx.today)


def _onco_consolidation(
    ctx: Context, course: Course, p: Protocol, last: date, stop: date, out: CoursePlan
) -> list[PlanItem]:
    """ONC-07: zoledronic acid when the next denosumab 120 mg dose would have been due (P9)."""
    assert p.interval is not None
    if _bisphosphonate_after(ctx, last):
        return []
    zol = ctx.table[ZOL_ONCO]
    due = max(p.interval.after(last), stop)
    crcl = crcl_on(ctx.facts.patient, ctx.facts.labs, on=ctx.today, config=ctx.config)
    dose = zoledronic_dose_mg(crcl) if crcl is not None else zol.dose_mg
    item = make_item(
        key=f"consolidation:{course.key}",
        ordinal=1,
        kind="consolidation",
        due=due,
        today=ctx.today,
        timing=protocol_timing(zol),
        rule="ONC-07",
        protocol=ZOL_ONCO,
        course_key=course.key,
        dose_mg=dose,
        product=zol.product,
        notification_offsets=zol.notification_offsets,
    )
    out.flags.append(make_flag("CONSOLIDATION_REQUIRED_ONCO", "ONC-07", "H", subject=item.key, due=due))
    out.flags += _ladder_flags(item, zol)
    return [item]


def _plan_zoledronic(ctx: Context, course: Course) -> CoursePlan:
    """ZOL-01 interval (P7), ZOL-04 quarterly on response, ZOL-02 dose on the baseline CrCl."""
    out = CoursePlan()
    p = ctx.table[ZOL_ONCO]
    assert p.interval is not None
    interval = p.interval
    if course.response in QUARTERLY_RESPONSES:
        interval = Interval(months=3)
        out.flags.append(make_flag("ZOL_QUARTERLY", "ZOL-04", "I", subject=course.key, response=course.response))
    doses = ctx.doses_of(course)
    baseline_on = doses[0].given_on if doses else ctx.today
    crcl = crcl_on(ctx.facts.patient, ctx.facts.labs, on=baseline_on, config=ctx.config)
    if crcl is None and doses:
        crcl = crcl_on(ctx.facts.patient, ctx.facts.labs, on=ctx.today, config=ctx.config)
    # Unknown CrCl: the nominal 4 mg is shown and ZOL-06 asks for a creatinine before dosing.
    dose = zoledronic_dose_mg(crcl) if crcl is not None else p.dose_mg
    out.flags.append(
        make_flag(
            "ZOL_DOSE_RENAL",
            "ZOL-02",
            "I" if crcl is not None else "W",
            subject=course.key,
            crcl=None if crcl is None else round(crcl, 2),
            dose=dose,
        )
    )
    last = doses[-1].given_on if doses else None
    items = _project(ctx, course, p, interval, last, len(doses), _effective_end(ctx, course), dose)
    if items:
        out.flags += _ladder_flags(items[0], p)
    out.items += items
    return out


def _check(
    ctx: Context,
    key: str,
    kind: str,
    due: date,
    rule: str,
    course_key: str | None,
    window: tuple[int, int, int],
    *,
    protocol: str | None = None,
    phase: str | None = None,
    ordinal: int | None = None,
) -> PlanItem:
    """A check item (calcium, CTX, 25-OH-D, dental, re-evaluation): (reminder, before, after)."""
    reminder, before, after = window
    ordinal = 1 if ordinal is None else ordinal  # every item has a sequence number in its series
    timing = timing_of(reminder, before, after, True, CHECK_LADDER)
    offsets = (-reminder, 0) if reminder else (0,)
    return item_at(key, kind, due, ctx.today, timing, rule, protocol, course_key, ordinal, None, None, phase, offsets)


def _relevant(items: list[PlanItem], today: date) -> list[PlanItem]:
    """Pending items from today on, plus only the latest one already past (older ones missed)."""
    past = [i for i in items if i.due < today]
    future = [i for i in items if i.due >= today]
    return ([max(past, key=lambda i: i.due)] if past else []) + future
