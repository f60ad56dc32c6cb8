"""Denosumab 120 mg (ONC-00 … ONC-07) and zoledronic acid 4 mg (ZOL-01 … ZOL-08)."""

from __future__ import annotations

import pytest

from scheduling.rules import RulesConfig, evaluate_gates

from .test_rules_support import (
    ONCO,
    ZOL,
    D,
    calcium,
    codes,
    course,
    dental,
    doses,
    facts,
    item,
    lab,
    patient,
    plan,
)

READY = (*calcium("2026-03-01"), lab("25ohd", 35, "ng/mL", "2026-02-20"))
DENTAL_OK = (dental("exam", "2026-02-01"), dental("panoramic_xray", "2026-02-01"))


@pytest.mark.parametrize(
    ("missing", "code"),
    [
        pytest.param("vitd", "VITD_TEST_REQUIRED", id="ONC-00-vitamin-d-result"),
        pytest.param("renal", "RENAL_FUNCTION_REQUIRED", id="ONC-00-renal-function"),
        pytest.param("dental", "DENTAL_EVAL_REQUIRED", id="ONC-00-DENT-01-dental-with-OPG"),
    ],
)
def test_onc_00_checklist_blocks_with_override(missing: str, code: str) -> None:
    labs = calcium("2026-03-01") + (() if missing == "vitd" else (lab("25ohd", 35, "ng/mL", "2026-02-20"),))
    pt = patient(egfr_ml_min=None) if missing == "renal" else patient()
    events = (dental("exam", "2026-02-01"),) if missing == "dental" else DENTAL_OK
    f = facts(pt=pt, courses=(course(ONCO, "2026-03-01"),), labs=labs, dental_events=events)
    flags = evaluate_gates(f, on=D("2026-03-01"), protocol=ONCO, config=RulesConfig())
    flag = next(x for x in flags if x.code == code)
    assert flag.blocks and flag.override_allowed and flag.severity == "H"
    injection = item(plan(f, "2026-03-01"), "injection:c1:1")
    assert injection.status == "blocked" and code in injection.blocked_by


def test_onc_00_complete_checklist_does_not_block() -> None:
    f = facts(courses=(course(ONCO, "2026-03-01"),), labs=READY, dental_events=DENTAL_OK)
    assert item(plan(f, "2026-03-01"), "injection:c1:1").status == "due"


@pytest.mark.parametrize(
    ("interval", "due"),
    [
        pytest.param("28d", "2026-03-29", id="ONC-01-28-days-default"),
        pytest.param("1m", "2026-04-01", id="ONC-01-calendar-month"),
    ],
)
def test_onc_01_interval(interval: str, due: str) -> None:
    cfg = RulesConfig.from_mapping({"onco_monthly_interval": interval})
    f = facts(courses=(course(ONCO, "2026-03-01"),), dose_list=doses(ONCO, "2026-03-01"), labs=READY)
    nxt = item(plan(f, "2026-03-02", cfg), "injection:c1:2")
    assert nxt.due == D(due) and nxt.dose_mg == 120 and nxt.rule == "ONC-01"


def test_onc_01_28d_projection_is_pure_day_arithmetic() -> None:
    f = facts(courses=(course(ONCO, "2026-03-01"),), dose_list=doses(ONCO, "2026-03-01"))
    dues = [i.due for i in plan(f, "2026-03-02").items if i.kind == "injection"][:3]
    assert dues == [D("2026-03-29"), D("2026-04-26"), D("2026-05-24")]


@pytest.mark.parametrize(
    ("today", "status", "flag"),
    [
        pytest.param("2026-03-21", "scheduled", None, id="ONC-02-scheduled"),
        pytest.param("2026-03-22", "reminder", None, id="ONC-02-reminder-D-7"),
        pytest.param("2026-03-29", "due", None, id="ONC-02-due"),
        pytest.param("2026-03-30", "overdue_L1", "OVERDUE", id="ONC-02-L1-D+1"),
        pytest.param("2026-04-06", "overdue_L2", "PRESCRIBER_ALERT", id="ONC-02-L2-D+8"),
        pytest.param("2026-04-26", "overdue_L2", "PRESCRIBER_ALERT", id="ONC-02-L2-D+28"),
        pytest.param("2026-04-27", "overdue_L3", "REBOUND_RISK_ONCO", id="ONC-02-L3-D+29"),
    ],
)
def test_onc_02_ladder(today: str, status: str, flag: str | None) -> None:
    f = facts(courses=(course(ONCO, "2026-03-01"),), dose_list=doses(ONCO, "2026-03-01"), labs=calcium(today))
    p = plan(f, today)
    assert item(p, "injection:c1:2").status == status
    if flag:
        assert any(x.code == flag and x.rule == "ONC-02" for x in p.flags)


def test_onc_03_spacing_refused() -> None:
    """ONC-03: a 3-month request for denosumab 120 mg keeps the 28-day interval."""
    f = facts(courses=(course(ONCO, "2026-03-01", requested_interval_months=3),), dose_list=doses(ONCO, "2026-03-01"))
    p = plan(f, "2026-03-02")
    assert "DMAB_ONC_SPACING_NOT_SUPPORTED" in codes(p)
    assert item(p, "injection:c1:2").due == D("2026-03-29")


def test_onc_04_supplementation_and_hold_on_hypercalcaemia() -> None:
    base = facts(courses=(course(ONCO, "2026-03-01"),), dose_list=doses(ONCO, "2026-03-01"))
    assert "SUPPLEMENTATION_DAILY" in codes(plan(base, "2026-03-02"))
    high = facts(courses=base.courses, dose_list=base.doses, labs=calcium("2026-03-02", 2.8))
    p = plan(high, "2026-03-02")
    assert "SUPPLEMENTATION_HOLD" in codes(p) and "SUPPLEMENTATION_DAILY" not in codes(p)


def test_onc_05_and_zol_07_reevaluation_after_24_months() -> None:
    """ONC-05 re-evaluation and ZOL-07 ONJ risk at first dose + 24 months."""
    f = facts(courses=(course(ZOL, "2026-01-10"),), dose_list=doses(ZOL, "2026-01-10"))
    reeval = item(plan(f, "2026-01-11"), "reevaluation:oncology:1")
    assert reeval.due == D("2028-01-10") and reeval.rule == "ONC-05"
    later = plan(facts(courses=f.courses, dose_list=f.doses), "2028-01-10")
    assert {"REEVALUATION_DUE", "ONJ_RISK_24M"} <= codes(later)


def test_onc_06_adynamic_bone_warning() -> None:
    """ONC-06 with CA-POST-02 monitoring."""
    f = facts(pt=patient(egfr_ml_min=25.0), courses=(course(ONCO, "2026-03-01"),), dose_list=doses(ONCO, "2026-03-01"))
    p = plan(f, "2026-03-02")
    assert {"ADYNAMIC_BONE_WARNING", "ADVANCED_CKD_BOXED_WARNING"} <= codes(p)


def test_onc_07_stop_requires_zoledronic_at_next_due() -> None:
    f = facts(
        pt=patient(crcl_ml_min=45.0),
        courses=(course(ONCO, "2026-03-01", stop=("2026-03-10", None)),),
        dose_list=doses(ONCO, "2026-03-01"),
    )
    p = plan(f, "2026-03-10")
    cons = item(p, "consolidation:c1")
    assert (cons.protocol, cons.due, cons.rule, cons.dose_mg) == (ZOL, D("2026-03-29"), "ONC-07", 3.3)
    assert "CONSOLIDATION_REQUIRED_ONCO" in codes(p)
    assert not [i for i in p.items if i.kind == "injection"]


@pytest.mark.parametrize(
    ("crcl", "dose"),
    [
        pytest.param(75.0, 4.0, id="ZOL-02-above-60"),
        pytest.param(60.0, 3.5, id="ZOL-02-60-is-3.5"),
        pytest.param(39.92, 3.0, id="ZOL-02-39.92-not-rounded"),
    ],
)
def test_zol_02_dose_on_items(crcl: float, dose: float) -> None:
    f = facts(pt=patient(crcl_ml_min=crcl), courses=(course(ZOL, "2026-03-01"),), dose_list=doses(ZOL, "2026-03-01"))
    assert item(plan(f, "2026-03-02"), "injection:c1:2").dose_mg == dose


def test_zol_01_interval_and_hydration_and_zol_05_first_infusion() -> None:
    """ZOL-01 hydration and interval; ZOL-05 paracetamol only on the first infusion; ZOL-06."""
    f = facts(courses=(course(ZOL, "2026-03-01"),), labs=READY, dental_events=DENTAL_OK)
    flags = evaluate_gates(f, on=D("2026-03-01"), protocol=ZOL, config=RulesConfig())
    assert {"ZOL_HYDRATION", "ZOL_PARACETAMOL_FIRST_INFUSION", "ZOL_CREATININE_BEFORE_EACH_DOSE"} <= {
        x.code for x in flags
    }
    after = facts(courses=f.courses, dose_list=doses(ZOL, "2026-03-01"), labs=READY, dental_events=DENTAL_OK)
    again = evaluate_gates(after, on=D("2026-03-29"), protocol=ZOL, config=RulesConfig())
    assert "ZOL_PARACETAMOL_FIRST_INFUSION" not in {x.code for x in again}
    assert item(plan(after, "2026-03-02"), "injection:c1:2").due == D("2026-03-29")


def test_zol_03_contraindicated_below_30_never_overridable() -> None:
    f = facts(
        pt=patient(crcl_ml_min=29.9),
        courses=(course(ZOL, "2026-03-01"),),
        dose_list=doses(ZOL, "2026-03-01"),
        labs=calcium("2026-03-29"),
    )
    flags = evaluate_gates(f, on=D("2026-03-29"), protocol=ZOL, config=RulesConfig())
    flag = next(x for x in flags if x.code == "ZOL_CONTRAINDICATED_RENAL")
    assert flag.blocks and not flag.override_allowed and flag.rule == "ZOL-03"
    assert item(plan(f, "2026-03-29"), "injection:c1:2").blocked_by == ("ZOL_CONTRAINDICATED_RENAL",)


@pytest.mark.parametrize("response", ["complete", "good", "oligometastatic"])
def test_zol_04_quarterly_on_response(response: str) -> None:
    f = facts(courses=(course(ZOL, "2026-01-31", response=response),), dose_list=doses(ZOL, "2026-01-31"))
    p = plan(f, "2026-02-01")
    assert item(p, "injection:c1:2").due == D("2026-04-30")  # ZOL-04: add_months(last, 3), clamped
    assert item(p, "injection:c1:3").due == D("2026-07-31")  # anchored, not chained
    assert "ZOL_QUARTERLY" in codes(p)


def test_zol_06_creatinine_before_each_dose() -> None:
    f = facts(courses=(course(ZOL, "2026-03-01"),), dose_list=doses(ZOL, "2026-03-01"))
    flags = evaluate_gates(f, on=D("2026-03-29"), protocol=ZOL, config=RulesConfig())
    assert any(x.code == "ZOL_CREATININE_BEFORE_EACH_DOSE" and x.severity == "W" for x in flags)


@pytest.mark.parametrize(
    ("today", "status"),
    [
        pytest.param("2026-03-22", "reminder", id="ZOL-08-reminder-D-7"),
        pytest.param("2026-03-30", "overdue_L1", id="ZOL-08-L1-D+1"),
        pytest.param("2026-04-26", "overdue_L1", id="ZOL-08-L1-D+28"),
        pytest.param("2026-04-27", "overdue_L2", id="ZOL-08-L2-D+29"),
    ],
)
def test_zol_08_ladder(today: str, status: str) -> None:
    f = facts(
        pt=patient(crcl_ml_min=70.0),
        courses=(course(ZOL, "2026-03-01"),),
        dose_list=doses(ZOL, "2026-03-01"),
        labs=calcium(today),
    )
    assert item(plan(f, today), "injection:c1:2").status == status
