"""One row per rule id of clinical-rules.md section 2: each scenario must produce an item or a flag
carrying that rule id (or, for pure arithmetic rules, the table's worked value)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from scheduling.rules import Plan, RulesConfig
from scheduling.rules.calendar import add_days, add_months, age_on, local_date, more_than_weeks, notification_instant
from scheduling.rules.labs import (
    cockcroft_gault,
    corrected_calcium,
    renal_for_denosumab,
    vitd_class,
    zoledronic_dose_mg,
)

from .test_rules_support import (
    ALN,
    ONCO,
    OP,
    VITD,
    ZOL,
    ZOL5,
    D,
    calcium,
    course,
    dental,
    doses,
    facts,
    lab,
    med,
    patient,
    plan,
)

OK_DENTAL = (dental("exam", "2026-01-02"), dental("panoramic_xray", "2026-01-02"))
VIT_OK = (lab("25ohd", 35, "ng/mL", "2026-01-01"),)


def rules_of(p: Plan) -> set[str]:
    return {i.rule for i in p.items} | {f.rule for f in p.flags}


PLAN_ROWS: dict[str, Callable[[], Plan]] = {
    "OP-01": lambda: plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-06-01"),
    "OP-02": lambda: plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-06-17"),
    "OP-03": lambda: plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15", "2026-03-01")), "2026-03-01"),
    "OP-04": lambda: plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-07-16"),
    "OP-05": lambda: plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-07-16"),
    "OP-06": lambda: plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2028-01-15"),
    "OP-07": lambda: plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-02-01"),
    "OP-08": lambda: plan(
        facts(courses=(course(stop=("2026-06-01", None)),), dose_list=doses(OP, "2026-01-15")), "2026-06-01"
    ),
    "ONC-00": lambda: plan(facts(courses=(course(ONCO),)), "2026-01-15"),
    "ONC-01": lambda: plan(facts(courses=(course(ONCO),), dose_list=doses(ONCO, "2026-01-15")), "2026-01-16"),
    "ONC-02": lambda: plan(facts(courses=(course(ONCO),), dose_list=doses(ONCO, "2026-01-15")), "2026-02-13"),
    "ONC-03": lambda: plan(facts(courses=(course(ONCO, requested_interval_months=3),)), "2026-01-10"),
    "ONC-04": lambda: plan(facts(courses=(course(ONCO),)), "2026-01-15"),
    "ONC-05": lambda: plan(facts(courses=(course(ONCO),), dose_list=doses(ONCO, "2026-01-15")), "2026-01-16"),
    "ONC-06": lambda: plan(facts(pt=patient(egfr_ml_min=20.0), courses=(course(ONCO),)), "2026-01-15"),
    "ONC-07": lambda: plan(
        facts(courses=(course(ONCO, stop=("2026-02-01", None)),), dose_list=doses(ONCO, "2026-01-15")), "2026-02-01"
    ),
    "ZOL-01": lambda: plan(facts(courses=(course(ZOL),), dose_list=doses(ZOL, "2026-01-15")), "2026-01-16"),
    "ZOL-02": lambda: plan(
        facts(pt=patient(crcl_ml_min=45.0), courses=(course(ZOL),), dose_list=doses(ZOL, "2026-01-15")), "2026-01-16"
    ),
    "ZOL-03": lambda: plan(
        facts(
            pt=patient(crcl_ml_min=20.0),
            courses=(course(ZOL),),
            labs=calcium("2026-01-15") + VIT_OK,
            dental_events=OK_DENTAL,
        ),
        "2026-01-15",
    ),
    "ZOL-04": lambda: plan(facts(courses=(course(ZOL, response="good"),)), "2026-01-10"),
    "ZOL-05": lambda: plan(facts(courses=(course(ZOL),), labs=calcium("2026-01-15")), "2026-01-15"),
    "ZOL-06": lambda: plan(facts(courses=(course(ZOL),), labs=calcium("2026-01-15")), "2026-01-15"),
    "ZOL-07": lambda: plan(facts(courses=(course(ZOL),), dose_list=doses(ZOL, "2026-01-15")), "2028-01-15"),
    "ZOL-08": lambda: plan(facts(courses=(course(ZOL),), dose_list=doses(ZOL, "2026-01-15")), "2026-02-13"),
    "CONS-01": lambda: plan(
        facts(courses=(course(stop=("2026-06-01", ZOL5)),), dose_list=doses(OP, "2026-01-15")), "2026-06-01"
    ),
    "CONS-02": lambda: plan(
        facts(
            courses=(course(stop=("2026-06-01", None)),),
            dose_list=doses(OP, "2026-01-15") + doses(ZOL5, "2026-07-15", course_key=None, prefix="z"),
        ),
        "2026-07-16",
    ),
    "CONS-03": lambda: plan(
        facts(courses=(course(stop=("2026-06-01", ALN)),), dose_list=doses(OP, "2026-01-15")), "2026-06-01"
    ),
    "CONS-04": lambda: plan(
        facts(
            pt=patient(crcl_ml_min=30.0),
            courses=(course(stop=("2026-06-01", None)),),
            dose_list=doses(OP, "2026-01-15"),
            labs=calcium("2026-07-15"),
        ),
        "2026-07-15",
    ),
    "CONS-05": lambda: plan(
        facts(
            courses=(course(stop=("2026-06-01", None)),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-07-20")
        ),
        "2026-07-20",
    ),
    "CA-03": lambda: plan(
        facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-07-10", 2.0)), "2026-07-15"
    ),
    "CA-04": lambda: plan(
        facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-07-10", 2.8)), "2026-07-15"
    ),
    "CA-05": lambda: plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-07-15"),
    "CA-POST-01": lambda: plan(
        facts(pt=patient(egfr_ml_min=45.0), courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-01-16"
    ),
    "CA-POST-02": lambda: plan(
        facts(pt=patient(dialysis=True), courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-01-16"
    ),
    "CA-POST-03": lambda: plan(facts(courses=(course(ONCO),), dose_list=doses(ONCO, "2026-01-15")), "2026-01-16"),
    "CA-RISK-01": lambda: plan(
        facts(pt=patient(predispositions=("thyroid_surgery",)), courses=(course(),), dose_list=doses(OP, "2026-01-15")),
        "2026-01-16",
    ),
    "VITD-02": lambda: plan(
        facts(courses=(course(VITD),), labs=(lab("25ohd", 15, "ng/mL", "2026-01-01"),)), "2026-01-15"
    ),
    "VITD-03": lambda: plan(facts(courses=(course(VITD),), labs=VIT_OK), "2026-01-15"),
    "VITD-04": lambda: plan(
        facts(courses=(course(ONCO),), labs=(lab("25ohd", 15, "ng/mL", "2026-01-01"),)), "2026-01-15"
    ),
    "VITD-05": lambda: plan(
        facts(courses=(course(VITD),), labs=(lab("25ohd", 160, "ng/mL", "2026-01-01"),)), "2026-01-15"
    ),
    "VITD-06": lambda: plan(
        facts(courses=(course(VITD),), labs=(lab("25ohd", 5, "ng/mL", "2026-01-01"),)), "2026-01-15"
    ),
    "DENT-01": lambda: plan(facts(courses=(course(ONCO),), labs=VIT_OK + calcium("2026-01-15")), "2026-01-15"),
    "DENT-02": lambda: plan(
        facts(
            courses=(course(ONCO),),
            labs=VIT_OK + calcium("2026-01-15"),
            dental_events=(*OK_DENTAL, dental("extraction", "2026-01-05")),
        ),
        "2026-01-15",
    ),
    "DENT-03": lambda: plan(
        facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), dental_events=OK_DENTAL), "2026-01-16"
    ),
    "DENT-04": lambda: plan(
        facts(
            courses=(course(),), dose_list=doses(OP, "2026-01-15"), dental_events=(dental("extraction", "2026-02-01"),)
        ),
        "2026-02-02",
    ),
    "ONJ-01": lambda: plan(
        facts(
            courses=(course(),),
            dose_list=doses(OP, "2026-01-15"),
            dental_events=(dental("exposed_bone", "2026-02-01"),),
        ),
        "2026-02-02",
    ),
    "ONJ-02": lambda: plan(
        facts(
            pt=patient(risk_factors=("craniofacial_irradiation",)),
            courses=(course(),),
            dose_list=doses(OP, "2026-01-15"),
            dental_events=(dental("exposed_bone", "2026-02-01"),),
        ),
        "2026-02-02",
    ),
    "RISK-01": lambda: plan(facts(pt=patient(risk_factors=("alcohol",)), courses=(course(),)), "2026-01-16"),
    "RISK-02": lambda: plan(facts(courses=(course(),), meds=(med("prednisone", 20, "2025-01-01"),)), "2026-01-16"),
    "BIO-01": lambda: plan(facts(courses=(course(),), meds=(med("belimumab", None, "2025-01-01"),)), "2026-01-16"),
    "DUP-01": lambda: plan(
        facts(courses=(course(), course(ONCO, "2026-03-01", key="c2")), dose_list=doses(OP, "2026-01-15")), "2026-03-02"
    ),
}


@pytest.mark.parametrize("rule", sorted(PLAN_ROWS), ids=sorted(PLAN_ROWS))
def test_rule_table_plan_rows(rule: str) -> None:
    assert rule in rules_of(PLAN_ROWS[rule]())


ARITHMETIC_ROWS: dict[str, Callable[[], bool]] = {
    "TIME-01": lambda: (
        local_date(datetime.fromisoformat("2026-03-19T23:30:00+00:00"), "Europe/Paris") == D("2026-03-20")
    ),
    "TIME-02": lambda: add_months(D("2027-11-30"), 3) == D("2028-02-29"),
    "TIME-03": lambda: add_days(D("2026-03-10"), 28) == D("2026-04-07"),
    "TIME-04": lambda: (
        notification_instant(D("2026-10-25"), "Europe/Paris", 9).isoformat() == "2026-10-25T08:00:00+00:00"
    ),
    "TIME-05": lambda: age_on(D("1952-02-29"), D("2027-02-28")) == 75,
    "TIME-06": lambda: more_than_weeks(D("2026-01-01"), D("2026-02-27"), 8),
    "CA-01": lambda: corrected_calcium(2.10, 28) == pytest.approx(2.40),
    "CA-02": lambda: RulesConfig().calcium_low_mmol_l == 2.20 and RulesConfig().calcium_high_mmol_l == 2.60,
    "VITD-01": lambda: vitd_class(12) == "insuffisance" and vitd_class(9.9) == "carence",
    "REN-01": lambda: (
        cockcroft_gault(age_years=80, weight_kg=60, creatinine_umol_l=100, sex="F") == pytest.approx(37.44)
    ),
    "REN-02": lambda: (
        renal_for_denosumab(patient(egfr_ml_min=None), (), on=D("2026-01-01"), config=RulesConfig()).source == "unknown"
    ),
    "ZOL-02": lambda: zoledronic_dose_mg(39.92) == 3.0,
}


@pytest.mark.parametrize("rule", sorted(ARITHMETIC_ROWS), ids=sorted(ARITHMETIC_ROWS))
def test_rule_table_arithmetic_rows(rule: str) -> None:
    assert ARITHMETIC_ROWS[rule]()
