"""Follow-up items: calcium checks (CA-05 pre-dose, CA-POST-01..03, CA-RISK-01), vitamin D
(VITD-02, VITD-03, VITD-06), dental visits (DENT-03, ONJ-01 review) and re-evaluations
(OP-06, ONC-05)."""

from __future__ import annotations

from datetime import date

from .calendar import add_days, add_months, age_on
from .comedications import active_on, drug_class
from .context import Context
from .courses import CoursePlan, _check, _relevant
from .facts import Course
from .flags import make_flag
from .gates import vitd_loading_end
from .items import PlanItem, item_at, timing_of
from .labs import latest, renal_for_denosumab, vitd_loading_doses, vitd_ng_ml
from .protocols import DMAB_ONCO, DMAB_OP, VITD

__all__ = ["calcium_checks", "dental_visits", "plan_vitamin_d", "reevaluations"]

_CALCIUM_TESTS = ("calcium_total", "calcium_ionised")


def _calcium_drawn(ctx: Context, start: date, end: date | None = None) -> bool:
    return any(
        lab.test in _CALCIUM_TESTS and lab.date >= start and (end is None or lab.date < end) and lab.date <= ctx.today
        for lab in ctx.facts.labs
    )


def pre_dose_calcium(ctx: Context, item: PlanItem) -> PlanItem | None:
    """CA-05 / OP-02: order the pre-injection calcium at the reminder; due D - 7 (OP, 28-day
    reminder) or D - 1 (oncology); satisfied by a calcium still valid on the later of D and today."""
    before = 7 if item.reminder <= add_days(item.due, -28) else 1
    due = add_days(item.due, -before)
    lead = (due - item.reminder).days
    valid_from = add_days(max(item.due, ctx.today), -ctx.config.calcium_max_age_days)
    if _calcium_drawn(ctx, max(item.reminder, valid_from)):
        return None
    suffix = "consolidation" if item.kind == "consolidation" else str(item.ordinal)
    return _check(
        ctx,
        f"calcium_check:{item.course_key}:{suffix}:pre",
        "calcium_check",
        due,
        "CA-05",
        item.course_key,
        (lead, lead, before),
        ordinal=item.ordinal,
    )


def calcium_checks(ctx: Context, course: Course, out: CoursePlan) -> None:
    """Post-injection calcium after the latest denosumab dose of ``course``.

    CA-POST-02 (eGFR < 30 or dialysis): + 7, 14, 21, 28 d then add_months(inj, 2..5) (6-monthly
    product) or + 7, 14, 21 d (4-weekly product, P16); it supersedes CA-POST-01. Otherwise
    CA-POST-03 (first 120 mg dose) and CA-RISK-01 (predisposition) at + 14 (window + 10), and
    CA-POST-01 (age ≥ 75, eGFR < 60 or unknown) at + 15 (window + 10); + 14 wins when both apply.
    """
    doses = ctx.doses_of(course)
    if course.protocol not in (DMAB_OP, DMAB_ONCO) or not doses:
        return
    inj, n = doses[-1].given_on, len(doses)
    cfg, patient = ctx.config, ctx.facts.patient
    renal = renal_for_denosumab(patient, ctx.facts.labs, on=inj, config=cfg)
    advanced = renal.dialysis or (renal.value is not None and renal.value < 30)
    base = f"calcium_check:{course.key}:{n}"
    planned: list[PlanItem] = []
    if advanced and (course.protocol == DMAB_OP or cfg.boxed_warning_applies_to_xgeva):
        dues = [(f"w{k}", add_days(inj, 7 * k), (2, 2, 3)) for k in (1, 2, 3)]
        if course.protocol == DMAB_OP:
            dues.append(("w4", add_days(inj, 28), (2, 2, 3)))
            dues += [(f"m{m}", add_months(inj, m), (7, 7, 7)) for m in (2, 3, 4, 5)]
        for i, (tag, due, window) in enumerate(dues):
            item = _check(ctx, f"{base}:{tag}", "calcium_check", due, "CA-POST-02", course.key, window, ordinal=i + 1)
            nxt = dues[i + 1] if i + 1 < len(dues) else None
            end = add_days(nxt[1], -nxt[2][1]) if nxt else None
            if not _calcium_drawn(ctx, item.window_start, end):
                planned.append(item)
        out.items += _relevant(planned, ctx.today)
        return
    elderly = age_on(patient.birth_date, inj, leap_birthday=cfg.leap_birthday) >= cfg.elderly_age
    ckd = (renal.value < cfg.ckd_egfr_ml_min) if renal.value is not None else (cfg.ckd_unknown_triggers)
    predisposed = bool(patient.predispositions) or any(
        drug_class(m) == "calcium_lowering" and active_on(m, inj) for m in ctx.facts.comedications
    )
    first_120 = course.protocol == DMAB_ONCO and len(ctx.doses_where(protocol=DMAB_ONCO, before=add_days(inj, 1))) == 1
    rule: str | None = None
    if first_120:
        rule, offset = "CA-POST-03", 14
    elif predisposed:
        rule, offset = "CA-RISK-01", 14
    elif elderly or ckd:
        rule, offset = "CA-POST-01", 15
    if rule is None:
        return
    item = _check(
        ctx, f"{base}:post", "calcium_check", add_days(inj, offset), rule, course.key, (offset - 10, offset - 10, 7)
    )
    if not _calcium_drawn(ctx, item.window_start) and item.due >= add_months(ctx.today, -6):
        out.items.append(item)
        out.flags.append(make_flag("POST_INJECTION_CALCIUM", rule, "W", subject=item.key, due=item.due))


def plan_vitamin_d(ctx: Context, course: Course, out: CoursePlan) -> None:
    """VITD-02 loading (dose k on start + 7k), VITD-03 maintenance from add_months(last loading
    dose, 1) anchored monthly, VITD-06 follow-up 25-OH-D at add_months(loading_end, 3)."""
    p = ctx.table[VITD]
    lab = latest(ctx.facts.labs, "25ohd", on=course.start_date) or latest(ctx.facts.labs, "25ohd", on=ctx.today)
    level = vitd_ng_ml(lab) if lab else None
    n_load = vitd_loading_doses(level) if level is not None else 0
    doses = ctx.doses_of(course)
    given = len(doses)
    timing = timing_of(p.reminder_days, p.window_before_days, p.window_after_days, False, p.escalation)
    stopped = course.stop is not None and course.stop.date <= ctx.today
    # (ordinal, due, phase, rule) of each dose from the next one on; items only for those kept.
    dues: list[tuple[int, date, str, str]] = []

    today, key, dose_mg, product, offsets = ctx.today, course.key, p.dose_mg, p.product, p.notification_offsets

    def dose_item(ordinal: int, due: date, phase: str, rule: str) -> PlanItem:
        return item_at(
            f"vitamin_d_dose:{key}:{ordinal}", "vitamin_d_dose", due, today, timing, rule, VITD, key, ordinal,
            dose_mg, product, phase, offsets,
        )  # fmt: skip

    for k in range(given, n_load):
        dues.append((k + 1, add_days(course.start_date, 7 * k), "loading", "VITD-02"))
    if n_load:
        anchor = doses[n_load - 1].given_on if given >= n_load else add_days(course.start_date, 7 * (n_load - 1))
        out.flags.append(
            make_flag(
                "VITD_LOADING_REQUIRED",
                "VITD-02",
                "W",
                subject=course.key,
                value=round(level or 0, 1),
                doses=n_load,
                loading_end=add_days(course.start_date, 7 * n_load),
            )
        )
    else:
        anchor = course.start_date
    shift = 1 if n_load else 0
    m = max(0, given - n_load)
    while True:
        due = add_months(anchor, m + shift)
        if due > ctx.horizon_end:
            break
        dues.append((n_load + m + 1, due, "maintenance", "VITD-03"))
        m += 1
    out.flags.append(make_flag("VITD_MAINTENANCE", "VITD-03", "I", subject=course.key))
    if not stopped:
        out.items += [dose_item(*planned) for planned in _relevant_dues(dues, ctx.today)]
    loading_end = vitd_loading_end(ctx, max(ctx.today, course.start_date))
    if level is not None and level < ctx.config.vitd_followup_below_ng_ml and loading_end:
        due = add_months(loading_end, ctx.config.vitd_followup_months)
        item = _check(
            ctx, f"vitamin_d_test:{course.key}:followup", "vitamin_d_test", due, "VITD-06", course.key, (14, 14, 28)
        )
        if latest(ctx.facts.labs, "25ohd", on=ctx.today, since=item.window_start) is None:
            out.items.append(item)
            out.flags.append(make_flag("VITD_FOLLOWUP", "VITD-06", "I", subject=item.key, due=due))


def _relevant_dues(dues: list[tuple[int, date, str, str]], today: date) -> list[tuple[int, date, str, str]]:
    """``courses._relevant`` on (ordinal, due, …) before any item is made: the doses from today
    on, plus only the latest one already past (older ones missed)."""
    past = [d for d in dues if d[1] < today]
    future = [d for d in dues if d[1] >= today]
    return ([max(past, key=_due_of)] if past else []) + future


def _due_of(planned: tuple[int, date, str, str]) -> date:
    return planned[1]


def dental_visits(ctx: Context, out: CoursePlan) -> None:
    """DENT-03: next dental exam at add_months(last visit, 6) (a clearance counts), every
    protocol; osteoporosis-only patients use ``osteoporosis_dental_months`` (P19)."""
    active = [c for c in ctx.facts.courses if ctx.table[c.protocol].antiresorptive and ctx.active_on(c, ctx.today)]
    if not active:
        return
    months = min(
        ctx.config.osteoporosis_dental_months
        if ctx.table[c.protocol].indication == "osteoporosis"
        else ctx.config.dental_interval_months
        for c in active
    )
    visits = sorted(e.date for e in ctx.facts.dental if e.event in ("exam", "clearance") and e.date <= ctx.today)
    items = []
    if visits:
        anchor, done = visits[-1], len(visits)
        k = 1
        while (due := add_months(anchor, months * k)) <= ctx.horizon_end:
            items.append(
                _check(
                    ctx,
                    f"dental_visit:{done + k}",
                    "dental_visit",
                    due,
                    "DENT-03",
                    None,
                    (14, 14, 30),
                    ordinal=done + k,
                )
            )
            k += 1
    else:
        due = min(c.start_date for c in active)
        items.append(_check(ctx, "dental_visit:1", "dental_visit", due, "DENT-03", None, (14, 14, 30), ordinal=1))
    out.items += _relevant(items, ctx.today)


def onj_review(ctx: Context, clock: date, out: CoursePlan) -> None:
    """ONJ-01: review the exposed bone on clock + 57 d (> 8 weeks, TIME-06)."""
    due = add_days(clock, 57)
    if not any(e.event == "exposed_bone_persisting" and e.date >= due for e in ctx.facts.dental):
        out.items.append(_check(ctx, "dental_visit:onj_review", "dental_visit", due, "ONJ-01", None, (7, 0, 14)))


def reevaluations(ctx: Context, out: CoursePlan) -> None:
    """OP-06 per osteoporosis course; ONC-05 / ZOL-07 once for oncology (first dose + 24 m)."""
    done = ctx.facts.reevaluations
    for course in ctx.facts.courses:
        if course.protocol != DMAB_OP or not ctx.active_on(course, ctx.today):
            continue
        doses = ctx.doses_of(course)
        if not doses:
            continue
        first = doses[0].given_on
        completed = sorted(r.date for r in done if r.course_key in (None, course.key) and r.date >= first)
        if completed:
            due = add_months(completed[-1], 24)
        else:
            due = add_months(first, 24)
            if len(doses) >= 4:
                due = min(due, add_months(doses[3].given_on, 6))
        item = _check(
            ctx,
            f"reevaluation:{course.key}:{len(completed) + 1}",
            "reevaluation",
            due,
            "OP-06",
            course.key,
            (28, 28, 28),
            ordinal=len(completed) + 1,
        )
        out.items.append(item)
        recent = [d for d in doses if not completed or d.given_on > completed[-1]]
        if len(recent) >= 4 or ctx.today >= due:
            severity = "H" if len(recent) >= 5 else "W"
            out.flags.append(make_flag("REEVALUATION_DUE", "OP-06", severity, subject=item.key, due=due))
    onco = ctx.doses_where(indication="oncology")
    onco_active = [
        c
        for c in ctx.facts.courses
        if ctx.table[c.protocol].indication == "oncology"
        and ctx.table[c.protocol].antiresorptive
        and ctx.active_on(c, ctx.today)
    ]
    if onco and onco_active:
        first = onco[0].given_on
        completed = sorted(
            r.date
            for r in done
            if r.date >= first and (r.course_key is None or r.course_key in {c.key for c in onco_active})
        )
        due = add_months(completed[-1] if completed else first, 24)
        item = _check(
            ctx,
            f"reevaluation:oncology:{len(completed) + 1}",
            "reevaluation",
            due,
            "ONC-05",
            None,
            (28, 28, 28),
            ordinal=len(completed) + 1,
        )
        out.items.append(item)
        if ctx.today >= due:
            out.flags.append(make_flag("REEVALUATION_DUE", "ONC-05", "W", subject=item.key, due=due))
    zol = ctx.doses_where(protocol="zoledronic_onco_4mg")
    if zol and ctx.today >= add_months(zol[0].given_on, 24):
        out.flags.append(make_flag("ONJ_RISK_24M", "ZOL-07", "W", since=add_months(zol[0].given_on, 24)))
