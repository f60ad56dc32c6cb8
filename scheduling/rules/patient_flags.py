"""Patient-level flags: supplementation (OP-07, ONC-04), labs (CA-03, CA-04, VITD-05),
co-medications and exposures (RISK-01, RISK-02, CA-RISK-01, BIO-01), dental and ONJ
(DENT-04, ONJ-01, ONJ-02), renal (ONC-06, CA-POST-02) and duplicates (DUP-01)."""

from __future__ import annotations

from datetime import date

from .calendar import add_days, add_months
from .comedications import active_on, drug_class, prednisone_mg
from .context import Context
from .courses import CoursePlan
from .facts import Course
from .flags import Flag, make_flag
from .followups import onj_review
from .labs import (
    HYPERCALCAEMIC_CRISIS_MMOL_L,
    latest,
    latest_calcium,
    renal_for_denosumab,
    vitd_loading_doses,
    vitd_ng_ml,
)
from .protocols import DMAB_ONCO, DMAB_OP, ZOL_ONCO

__all__ = ["patient_flags"]

_RISK_FACTOR_FLAGS = {
    "tobacco": "ONJ_RISK_TOBACCO",
    "alcohol": "ONJ_RISK_ALCOHOL",
    "head_neck_radiotherapy": "ONJ_RISK_HEAD_NECK_RT",
    "craniofacial_irradiation": "ONJ_RISK_HEAD_NECK_RT",
}
_SEVERITY = {1: "W", 2: "H", 3: "C", 4: "C"}


def patient_flags(ctx: Context, out: CoursePlan) -> None:
    today = ctx.today
    active = [c for c in ctx.facts.courses if ctx.active_on(c, today)]
    protocols = {ctx.table[c.protocol].id for c in active}
    antiresorptive = [c for c in active if ctx.table[c.protocol].antiresorptive]
    onco = any(ctx.table[c.protocol].indication == "oncology" for c in antiresorptive)
    dmab = [c for c in antiresorptive if ctx.table[c.protocol].family == "denosumab"]
    flags = out.flags
    since = add_days(today, -ctx.config.calcium_max_age_days)
    ca = latest_calcium(ctx.facts.labs, on=today, config=ctx.config, since=since)

    # CA-03 / CA-04 on the latest valid calcium.
    if ca is not None and ca.grade < 0:
        flags.append(
            make_flag(
                "HYPOCALCAEMIA_BLOCK",
                "CA-03",
                _SEVERITY[-ca.grade],
                blocks=True,
                value=round(ca.value_mmol_l, 2),
                grade=-ca.grade,
            )
        )
    high = ca is not None and ca.grade > 0
    if ca is not None and high:
        held = DMAB_OP in protocols
        flags.append(
            make_flag(
                "HYPERCALCAEMIA",
                "CA-04",
                _SEVERITY[ca.grade],
                blocks=held,
                value=round(ca.value_mmol_l, 2),
                grade=ca.grade,
            )
        )
        if ca.value_mmol_l > HYPERCALCAEMIC_CRISIS_MMOL_L:
            flags.append(make_flag("HYPERCALCAEMIC_CRISIS", "CA-04", "C", blocks=held))
            flags.append(make_flag("URGENT_PHYSICIAN_REVIEW", "CA-04", "C"))
    # ONC-04: daily supplementation unless hypercalcaemia.
    if onco:
        if high:
            flags.append(make_flag("SUPPLEMENTATION_HOLD", "ONC-04", "H"))
        else:
            flags.append(make_flag("SUPPLEMENTATION_DAILY", "ONC-04", "I"))
    # VITD-05: intoxication.
    vd = latest(ctx.facts.labs, "25ohd", on=today)
    if vd is not None and vitd_ng_ml(vd) > 150:
        flags.append(make_flag("VITD_INTOXICATION", "VITD-05", "C", value=round(vitd_ng_ml(vd))))
        flags.append(make_flag("SUPPLEMENTATION_HOLD", "VITD-05", "C"))
    elif (
        vd is not None and vitd_ng_ml(vd) < 30 and not any(c.protocol == "vitamin_d_50000iu" for c in ctx.facts.courses)
    ):
        flags.append(
            make_flag(
                "VITD_LOADING_REQUIRED",
                "VITD-02",
                "W",
                value=round(vitd_ng_ml(vd), 1),
                doses=vitd_loading_doses(vitd_ng_ml(vd)),
            )
        )

    if antiresorptive:
        flags += _comedication_flags(ctx, today, bool(dmab))
        flags += _renal_flags(ctx, today, dmab)
    flags += _dental_flags(ctx, out)
    flags += _duplicate_flags(ctx, today, dmab, protocols)


def _comedication_flags(ctx: Context, today: date, on_dmab: bool) -> list[Flag]:
    flags: list[Flag] = []
    for factor in ctx.facts.patient.risk_factors:  # RISK-01
        if factor in _RISK_FACTOR_FLAGS:
            flags.append(make_flag(_RISK_FACTOR_FLAGS[factor], "RISK-01", "W"))
    meds = [m for m in ctx.facts.comedications if active_on(m, today)]
    classes = {drug_class(m) for m in meds}
    if "glucocorticoid" in classes:
        flags.append(make_flag("ONJ_RISK_CORTICOSTEROIDS", "RISK-01", "W"))
        if on_dmab:  # CA-RISK-01 / R17
            flags.append(make_flag("ENSURE_CALCIUM_SUPPLEMENT", "CA-RISK-01", "I"))
    if "antiangiogenic" in classes:
        flags.append(make_flag("ONJ_RISK_ANTIANGIOGENIC", "RISK-01", "W"))
    for med in meds:  # RISK-02: ≥ 7.5 mg/day prednisone-equivalent for > 3 consecutive months
        mg = prednisone_mg(med) if drug_class(med) == "glucocorticoid" else None
        since = add_days(add_months(med.start_date, 3), 1)
        if mg is not None and mg >= 7.5 and today >= since:
            flags.append(make_flag("OP_RISK_GLUCOCORTICOIDS", "RISK-02", "I", name=med.name, since=since))
    if ctx.facts.patient.predispositions or "calcium_lowering" in classes:
        flags.append(make_flag("HYPOCALCAEMIA_PREDISPOSITION", "CA-RISK-01", "W"))
    biologics = [m for m in meds if drug_class(m) == "biologic"]
    for med in biologics:  # BIO-01: informative, never a block
        flags.append(make_flag("CONCOMITANT_BIOLOGIC_INFO", "BIO-01", "I", name=med.name))
    if biologics and classes & {"immunosuppressant", "glucocorticoid"}:
        flags.append(make_flag("INFECTION_VIGILANCE_IMMUNOSUPPRESSION", "BIO-01", "I"))
    return flags


def _renal_flags(ctx: Context, today: date, dmab: list[Course]) -> list[Flag]:
    if not dmab:
        return []
    renal = renal_for_denosumab(ctx.facts.patient, ctx.facts.labs, on=today, config=ctx.config)
    severe = renal.value is not None and renal.value < 30
    flags: list[Flag] = []
    protocols = {c.protocol for c in dmab}
    if severe and DMAB_ONCO in protocols:  # ONC-06
        flags.append(make_flag("ADYNAMIC_BONE_WARNING", "ONC-06", "H", value=round(renal.value or 0, 1)))
    applies = DMAB_OP in protocols or ctx.config.boxed_warning_applies_to_xgeva
    if (severe or renal.dialysis) and applies:  # CA-POST-02
        flags.append(make_flag("ADVANCED_CKD_BOXED_WARNING", "CA-POST-02", "H"))
    return flags


def _dental_flags(ctx: Context, out: CoursePlan) -> list[Flag]:
    flags: list[Flag] = []
    dental = sorted(ctx.facts.dental, key=lambda e: e.date)
    first_ar = ctx.doses_where(family="denosumab") + ctx.doses_where(family="bisphosphonate")
    first_dose = min((d.given_on for d in first_ar), default=None)
    # DENT-04: an extraction while on treatment.
    if first_dose and any(e.event == "extraction" and e.date > first_dose for e in dental):
        flags.append(make_flag("AVOID_EXTRACTIONS", "DENT-04", "W"))
    exposed = [e.date for e in dental if e.event == "exposed_bone"]
    if not exposed or first_dose is None or first_dose > max(exposed):
        return flags  # ONJ-01 needs a patient treated (now or before) with BP or denosumab
    identified = min(d for d in exposed if d >= first_dose)
    radiation = {"head_neck_radiotherapy", "craniofacial_irradiation"} & set(ctx.facts.patient.risk_factors)
    flags.append(make_flag("REFER_SPECIALIZED_CENTRE", "ONJ-01", "H", since=identified))
    if radiation:  # ONJ-02: the ONJ definition does not apply
        flags.append(make_flag("ONJ_DEFINITION_EXCLUDED_RADIATION", "ONJ-02", "W"))
        return flags
    starts = [e.date for e in dental if e.event == "onj_treatment_start" and e.date >= identified]
    clock = max(identified, min(starts)) if starts else identified
    confirmed = any(e.event == "exposed_bone_persisting" and e.date >= add_days(clock, 57) for e in dental)
    if confirmed:
        flags.append(make_flag("ONJ_CONFIRMED", "ONJ-01", "C", clock=clock))
    else:
        flags.append(make_flag("ONJ_SUSPECTED", "ONJ-01", "H", since=identified, clock=clock))
        onj_review(ctx, clock, out)
    return flags


def _duplicate_flags(ctx: Context, today: date, dmab: list[Course], protocols: set[str]) -> list[Flag]:
    """DUP-01: two active courses of the same denosumab, a Prolia dose given while Xgeva runs,
    or denosumab alongside a bisphosphonate course."""
    flags: list[Flag] = []
    keys = [c.protocol for c in dmab]
    onco_courses = [c for c in ctx.facts.courses if c.protocol == DMAB_ONCO]
    prolia_during_xgeva = any(
        ctx.active_on(c, d.given_on) for d in ctx.doses_where(protocol=DMAB_OP) for c in onco_courses
    )
    if len(keys) != len(set(keys)) or prolia_during_xgeva:
        flags.append(make_flag("DUPLICATE_DENOSUMAB_BLOCK", "DUP-01", "C", blocks=True))
    if dmab and ZOL_ONCO in protocols:
        flags.append(make_flag("DMAB_BISPHOSPHONATE_CONCOMITANT", "DUP-01", "H"))
    return flags
