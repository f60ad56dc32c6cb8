"""Administration gates: may a dose of ``protocol`` be recorded on ``on``?

A flag with ``blocks`` and ``override_allowed`` needs an emergency override; a blocking flag
without override is refused outright. Rules: CA-03, CA-04, CA-05 (calcium), VITD-04, VITD-05
(vitamin D), ONC-00 / DENT-01 / DENT-02 (pre-treatment checklist and dental healing), ZOL-03,
ZOL-05, ZOL-06, ZOL-01, CONS-04 (renal, zoledronic acid), DUP-01 (duplicates), OP-03 (early),
CA-POST-02 (before the first denosumab dose with advanced CKD).
"""

from __future__ import annotations

from datetime import date

from .calendar import add_days, add_months
from .config import RulesConfig
from .context import Context
from .errors import RuleInputError
from .facts import Course, PlanInput
from .flags import Flag, make_flag
from .labs import (
    HYPERCALCAEMIC_CRISIS_MMOL_L,
    crcl_on,
    latest,
    latest_calcium,
    renal_for_denosumab,
    vitd_loading_doses,
    vitd_ng_ml,
)
from .protocols import DMAB_ONCO, DMAB_OP, VITD, ZOL_ONCO, ZOL_OP, Protocol

__all__ = ["evaluate_gates", "gates_in_context", "vitd_loading_end"]

_CALCIUM_SEVERITY = {1: "W", 2: "H", 3: "C", 4: "C"}


def evaluate_gates(
    facts: PlanInput,
    *,
    on: date,
    protocol: str,
    config: RulesConfig,
    course_key: str | None = None,
) -> tuple[Flag, ...]:
    """Flags that apply to recording a dose of ``protocol`` on the local date ``on``."""
    ctx = Context.build(facts, on, config)
    if protocol not in ctx.table:
        raise RuleInputError("protocol", f"unknown protocol {protocol!r}")
    course = ctx.course(course_key) if course_key else _course_for(ctx, protocol, on)
    return gates_in_context(ctx, ctx.table[protocol], course, on)


def _course_for(ctx: Context, protocol: str, on: date) -> Course | None:
    started = [c for c in ctx.facts.courses if c.protocol == protocol and c.start_date <= on]
    if started:
        return max(started, key=lambda c: c.start_date)
    pending = [c for c in ctx.facts.courses if c.protocol == protocol]
    return min(pending, key=lambda c: c.start_date) if pending else None


def gates_in_context(
    ctx: Context,
    p: Protocol,
    course: Course | None,
    on: date,
    *,
    subject: str | None = None,
    first: bool | None = None,
) -> tuple[Flag, ...]:
    """Gate flags for ``p`` on ``on``; ``first`` overrides "first dose of the course" (a
    consolidation is never an antiresorptive start)."""
    if subject is None:
        subject = course.key if course else None
    first_of_course = (course is None or not ctx.doses_of(course, before=on)) if first is None else first
    flags: list[Flag] = []
    if p.parenteral_antiresorptive:
        flags += _calcium_gates(ctx, p, on, subject)
    if p.antiresorptive and first_of_course:
        flags += _vitd_gate(ctx, on, subject)
        flags += _dental_gates(ctx, p, on, subject)
        if p.indication == "oncology" and not ctx.doses_where(indication="oncology", before=on):
            flags += _onco_checklist(ctx, on, subject)
    if p.id in (ZOL_ONCO, ZOL_OP):
        flags += _zoledronic_gates(ctx, p, on, subject)
    if p.family == "denosumab":
        flags += _denosumab_gates(ctx, p, course, on, subject, first_of_course)
    if p.family == "bisphosphonate" and ctx.active_courses(on, family="denosumab"):
        # DUP-01: a bisphosphonate while a denosumab course is still active.
        flags.append(make_flag("DMAB_BISPHOSPHONATE_CONCOMITANT", "DUP-01", "H", subject=subject))
    if p.id == VITD:
        flags += _vitd_dose_gates(ctx, on, subject)
    return _dedupe(flags)


def _dedupe(flags: list[Flag]) -> tuple[Flag, ...]:
    seen: set[tuple[str, str | None]] = set()
    out: list[Flag] = []
    for f in flags:
        if (f.code, f.subject) not in seen:
            seen.add((f.code, f.subject))
            out.append(f)
    return tuple(out)


def _calcium_gates(ctx: Context, p: Protocol, on: date, subject: str | None) -> list[Flag]:
    """CA-05 freshness, CA-03 hypocalcaemia block, CA-04 hypercalcaemia (OP held, onco not)."""
    max_age = ctx.config.calcium_max_age_days
    ca = latest_calcium(ctx.facts.labs, on=on, config=ctx.config, since=add_days(on, -max_age))
    if ca is None:
        return [make_flag("CALCIUM_CHECK_REQUIRED", "CA-05", "H", blocks=True, subject=subject, days=max_age)]
    grade = ca.grade
    value = round(ca.value_mmol_l, 2)
    if grade < 0:
        return [
            make_flag(
                "HYPOCALCAEMIA_BLOCK",
                "CA-03",
                _CALCIUM_SEVERITY[-grade],
                blocks=True,
                subject=subject,
                value=value,
                grade=-grade,
            )
        ]
    if grade == 0:
        return []
    held = p.indication == "osteoporosis"
    out = [
        make_flag(
            "HYPERCALCAEMIA", "CA-04", _CALCIUM_SEVERITY[grade], blocks=held, subject=subject, value=value, grade=grade
        )
    ]
    if ca.value_mmol_l > HYPERCALCAEMIC_CRISIS_MMOL_L:
        out.append(make_flag("HYPERCALCAEMIC_CRISIS", "CA-04", "C", blocks=held, subject=subject))
        out.append(make_flag("URGENT_PHYSICIAN_REVIEW", "CA-04", "C", subject=subject))
    if p.indication == "oncology":
        out.append(make_flag("SUPPLEMENTATION_HOLD", "ONC-04", "H", subject=subject))
    return out


def vitd_loading_end(ctx: Context, on: date) -> date | None:
    """VITD-02: ``loading_end`` = start + 7N of the vitamin D course running on ``on``."""
    courses = [c for c in ctx.facts.courses if c.protocol == VITD and c.start_date <= on]
    if not courses:
        return None
    course = max(courses, key=lambda c: c.start_date)
    lab = latest(ctx.facts.labs, "25ohd", on=course.start_date) or latest(ctx.facts.labs, "25ohd", on=on)
    n = vitd_loading_doses(vitd_ng_ml(lab)) if lab else 0
    return add_days(course.start_date, 7 * n)


def _vitd_gate(ctx: Context, on: date, subject: str | None) -> list[Flag]:
    """VITD-04: before an antiresorptive start, the latest 25-OH-D must be ≥ 30 ng/mL or the
    loading finished (``loading_end`` reached). < 20: block (U); 20 to < 30: warning."""
    lab = latest(ctx.facts.labs, "25ohd", on=on)
    if lab is None:
        return []
    level = vitd_ng_ml(lab)
    if level >= ctx.config.vitd_warn_below_ng_ml:
        return []
    loading_end = vitd_loading_end(ctx, on)
    if loading_end is not None and on >= loading_end:
        return []
    earliest = loading_end.isoformat() if loading_end else None
    if level < ctx.config.vitd_block_below_ng_ml:
        return [
            make_flag(
                "VITD_GATE_BLOCK",
                "VITD-04",
                "H",
                blocks=True,
                override_allowed=True,
                subject=subject,
                earliest=earliest,
                value=round(level, 1),
            )
        ]
    return [make_flag("VITD_GATE_WARNING", "VITD-04", "W", subject=subject, earliest=earliest, value=round(level, 1))]


def _has_dental_eval(ctx: Context, on: date) -> bool:
    events = {e.event for e in ctx.facts.dental if e.date <= on}
    return bool(events & {"exam", "clearance"}) and "panoramic_xray" in events


def _dental_gates(ctx: Context, p: Protocol, on: date, subject: str | None) -> list[Flag]:
    """DENT-02: after an extraction E, start from E + 21 only with clearance recorded (B, U);
    E + 21 … E + 27: short-window info; recommended from E + 28. DENT-01 for osteoporosis: I."""
    out: list[Flag] = []
    if p.indication == "osteoporosis" and not _has_dental_eval(ctx, on):
        out.append(make_flag("DENTAL_EVAL_REQUIRED", "DENT-01", "I", subject=subject))
    extractions = [e.date for e in ctx.facts.dental if e.event == "extraction" and e.date <= on]
    if not extractions:
        return out
    e = max(extractions)
    earliest = add_days(e, 21)
    if on < earliest:
        out.append(
            make_flag(
                "DENTAL_HEALING_WAIT",
                "DENT-02",
                "H",
                blocks=True,
                override_allowed=True,
                subject=subject,
                extraction=e,
                earliest=earliest,
            )
        )
    if not any(x.event == "clearance" and e <= x.date <= on for x in ctx.facts.dental):
        out.append(
            make_flag(
                "DENTAL_CLEARANCE_REQUIRED",
                "DENT-02",
                "H",
                blocks=True,
                override_allowed=True,
                subject=subject,
                extraction=e,
            )
        )
    if earliest <= on < add_days(e, 28):
        out.append(
            make_flag("DENTAL_HEALING_SHORT_WINDOW_INFO", "DENT-02", "I", subject=subject, recommended=add_days(e, 28))
        )
    return out


def _onco_checklist(ctx: Context, on: date, subject: str | None) -> list[Flag]:
    """ONC-00 / DENT-01: 25-OH-D, renal function and dental evaluation with OPG (H, B, U)."""
    out: list[Flag] = []
    if latest(ctx.facts.labs, "25ohd", on=on) is None:
        out.append(make_flag("VITD_TEST_REQUIRED", "ONC-00", "H", blocks=True, override_allowed=True, subject=subject))
    renal = renal_for_denosumab(ctx.facts.patient, ctx.facts.labs, on=on, config=ctx.config)
    if not renal.known:
        out.append(
            make_flag("RENAL_FUNCTION_REQUIRED", "ONC-00", "H", blocks=True, override_allowed=True, subject=subject)
        )
    if not _has_dental_eval(ctx, on):
        out.append(
            make_flag("DENTAL_EVAL_REQUIRED", "DENT-01", "H", blocks=True, override_allowed=True, subject=subject)
        )
    return out


def _zoledronic_gates(ctx: Context, p: Protocol, on: date, subject: str | None) -> list[Flag]:
    """ZOL-03 (< 30, 4 mg) / CONS-04 (< 35, 5 mg) renal contraindications, never overridable;
    ZOL-06 creatinine before each dose; ZOL-01 hydration; ZOL-05 paracetamol on the first one."""
    out = [
        make_flag("ZOL_CREATININE_BEFORE_EACH_DOSE", "ZOL-06", "W", subject=subject),
        make_flag("ZOL_HYDRATION", "ZOL-01", "I", subject=subject),
    ]
    crcl = crcl_on(ctx.facts.patient, ctx.facts.labs, on=on, config=ctx.config)
    if crcl is not None and p.id == ZOL_ONCO and crcl < 30:
        out.append(
            make_flag("ZOL_CONTRAINDICATED_RENAL", "ZOL-03", "C", blocks=True, subject=subject, crcl=round(crcl, 2))
        )
    if crcl is not None and p.id == ZOL_OP and crcl < 35:
        out.append(
            make_flag("ZOL5_CONTRAINDICATED_RENAL", "CONS-04", "C", blocks=True, subject=subject, crcl=round(crcl, 2))
        )
    if not ctx.doses_where(protocol=ZOL_ONCO, before=on) and not ctx.doses_where(protocol=ZOL_OP, before=on):
        out.append(make_flag("ZOL_PARACETAMOL_FIRST_INFUSION", "ZOL-05", "I", subject=subject))
    return out


def _denosumab_gates(
    ctx: Context, p: Protocol, course: Course | None, on: date, subject: str | None, first: bool
) -> list[Flag]:
    out: list[Flag] = []
    # DUP-01: Prolia while a Xgeva course is active; never overridable.
    if p.id == DMAB_OP and ctx.active_courses(on, protocol=DMAB_ONCO):
        out.append(make_flag("DUPLICATE_DENOSUMAB_BLOCK", "DUP-01", "C", blocks=True, subject=subject))
    same = [c for c in ctx.active_courses(on, protocol=p.id) if course is None or c != course]
    if same:
        out.append(make_flag("DUPLICATE_DENOSUMAB_BLOCK", "DUP-01", "C", blocks=True, subject=subject))
    if ctx.active_courses(on, protocol=ZOL_ONCO):
        out.append(make_flag("DMAB_BISPHOSPHONATE_CONCOMITANT", "DUP-01", "H", subject=subject))
    # OP-03: before D - 21 is early (recorded anyway).
    if p.id == DMAB_OP and course is not None:
        prior = ctx.doses_of(course, before=on)
        if prior:
            due = add_months(prior[-1].given_on, 6)
            if on < add_days(due, -ctx.config.op_window_days):
                out.append(make_flag("EARLY_INJECTION", "OP-03", "I", subject=subject, due=due))
    # CA-POST-02: advanced CKD before the first dose (P16 extends it to Xgeva).
    renal = renal_for_denosumab(ctx.facts.patient, ctx.facts.labs, on=on, config=ctx.config)
    advanced = renal.dialysis or (renal.value is not None and renal.value < 30)
    applies = p.id == DMAB_OP or ctx.config.boxed_warning_applies_to_xgeva
    if advanced and applies:
        out.append(make_flag("ADVANCED_CKD_BOXED_WARNING", "CA-POST-02", "H", subject=subject))
        if first:
            out.append(make_flag("CKD_MBD_EVALUATION_REQUIRED", "CA-POST-02", "H", subject=subject))
            out.append(make_flag("CKD_MBD_SPECIALIST_SUPERVISION", "CA-POST-02", "H", subject=subject))
    return out


def _vitd_dose_gates(ctx: Context, on: date, subject: str | None) -> list[Flag]:
    """VITD-05 intoxication and CA-04/ONC-04 hypercalcaemia hold vitamin D (override allowed)."""
    out: list[Flag] = []
    lab = latest(ctx.facts.labs, "25ohd", on=on)
    if lab is not None and vitd_ng_ml(lab) > 150:
        out.append(make_flag("VITD_INTOXICATION", "VITD-05", "C", subject=subject))
        out.append(
            make_flag("SUPPLEMENTATION_HOLD", "VITD-05", "C", blocks=True, override_allowed=True, subject=subject)
        )
    since = add_days(on, -ctx.config.calcium_max_age_days)
    ca = latest_calcium(ctx.facts.labs, on=on, config=ctx.config, since=since)
    if ca is not None and ca.status == "high":
        out.append(
            make_flag("SUPPLEMENTATION_HOLD", "ONC-04", "H", blocks=True, override_allowed=True, subject=subject)
        )
    return out
