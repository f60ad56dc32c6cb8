"""CA-POST-01 … 03, CA-RISK-01, VITD-02 … 06, DENT-03/04, ONJ-01/02, RISK-01/02, BIO-01."""

from __future__ import annotations

import pytest

from .test_rules_support import (
    ONCO,
    OP,
    VITD,
    D,
    calcium,
    codes,
    course,
    dental,
    doses,
    facts,
    item,
    lab,
    med,
    patient,
    plan,
)


@pytest.mark.parametrize(
    ("pt", "rule", "due", "window_start"),
    [
        pytest.param(
            {"birth_date": D("1951-01-10")},
            "CA-POST-01",
            "2026-01-30",
            "2026-01-25",
            id="CA-POST-01-age-75-on-injection-date",
        ),
        pytest.param({"egfr_ml_min": 59.0}, "CA-POST-01", "2026-01-30", "2026-01-25", id="CA-POST-01-egfr-below-60"),
        pytest.param({"egfr_ml_min": None}, "CA-POST-01", "2026-01-30", "2026-01-25", id="CA-POST-01-renal-unknown"),
        pytest.param(
            {"predispositions": ("hypoparathyroidism",)},
            "CA-RISK-01",
            "2026-01-29",
            "2026-01-25",
            id="CA-RISK-01-predisposed-D+14",
        ),
        pytest.param(
            {"predispositions": ("malabsorption",), "egfr_ml_min": 50.0},
            "CA-RISK-01",
            "2026-01-29",
            "2026-01-25",
            id="CA-RISK-01-with-CA-POST-01-uses-14",
        ),
    ],
)
def test_post_injection_calcium(pt: dict[str, object], rule: str, due: str, window_start: str) -> None:
    f = facts(pt=patient(**pt), courses=(course(),), dose_list=doses(OP, "2026-01-15"))
    check = item(plan(f, "2026-01-16"), "calcium_check:c1:1:post")
    assert (check.rule, check.due, check.window_start) == (rule, D(due), D(window_start))


def test_ca_post_01_not_for_74_year_old_with_good_kidneys() -> None:
    f = facts(pt=patient(birth_date=D("1951-01-16")), courses=(course(),), dose_list=doses(OP, "2026-01-15"))
    assert "calcium_check:c1:1:post" not in {i.key for i in plan(f, "2026-01-16").items}


def test_ca_post_01_done_when_calcium_drawn_in_window() -> None:
    f = facts(
        pt=patient(egfr_ml_min=50.0), courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-01-27")
    )
    assert "calcium_check:c1:1:post" not in {i.key for i in plan(f, "2026-01-28").items}


def test_ca_post_02_weekly_then_monthly_for_prolia() -> None:
    f = facts(pt=patient(egfr_ml_min=25.0), courses=(course(),), dose_list=doses(OP, "2026-01-15"))
    checks = [i for i in plan(f, "2026-01-15").items if i.kind == "calcium_check" and i.rule == "CA-POST-02"]
    assert [c.due for c in checks] == [
        D(x)
        for x in (
            "2026-01-22",
            "2026-01-29",
            "2026-02-05",
            "2026-02-12",
            "2026-03-15",
            "2026-04-15",
            "2026-05-15",
            "2026-06-15",
        )
    ]


def test_ca_post_02_xgeva_weekly_three() -> None:
    f = facts(pt=patient(dialysis=True), courses=(course(ONCO),), dose_list=doses(ONCO, "2026-01-15"))
    checks = [i.due for i in plan(f, "2026-01-15").items if i.rule == "CA-POST-02"]
    assert checks == [D("2026-01-22"), D("2026-01-29"), D("2026-02-05")]


def test_ca_post_03_first_xgeva_dose_day_14() -> None:
    f = facts(courses=(course(ONCO),), dose_list=doses(ONCO, "2026-01-15"))
    check = item(plan(f, "2026-01-16"), "calcium_check:c1:1:post")
    assert (check.rule, check.due) == ("CA-POST-03", D("2026-01-29"))
    second = facts(courses=(course(ONCO),), dose_list=doses(ONCO, "2026-01-15", "2026-02-12"))
    assert "calcium_check:c1:2:post" not in {i.key for i in plan(second, "2026-02-13").items}


def test_ca_risk_01_glucocorticoids_ensure_calcium() -> None:
    f = facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), meds=(med("prednisolone", 5, "2026-01-01"),))
    assert "ENSURE_CALCIUM_SUPPLEMENT" in codes(plan(f, "2026-02-01"))


def test_ca_05_pre_dose_calcium_item_at_reminder() -> None:
    f = facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"))
    check = item(plan(f, "2026-06-01"), "calcium_check:c1:2:pre")
    assert (check.window_start, check.due, check.rule) == (D("2026-06-17"), D("2026-07-08"), "CA-05")
    drawn = facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-06-20"))
    assert "calcium_check:c1:2:pre" not in {i.key for i in plan(drawn, "2026-06-21").items}


def test_vitd_02_03_twelve_ng_ml_gives_eight_loading_then_monthly() -> None:
    # Hand check: 12 ng/mL -> insuffisance (Tableau 1) but < 20 -> 8 weekly doses (scheme).
    # Start 2026-02-02: doses on +0 … +49 d (last 2026-03-23), loading_end = +56 d = 2026-03-30,
    # maintenance from add_months(2026-03-23, 1) = 2026-04-23, anchored monthly.
    f = facts(courses=(course(VITD, "2026-02-02"),), labs=(lab("25ohd", 12, "ng/mL", "2026-01-20"),))
    p = plan(f, "2026-02-02")
    loading = [i for i in p.items if i.phase == "loading"]
    assert [i.due for i in loading] == [
        D(x)
        for x in (
            "2026-02-02",
            "2026-02-09",
            "2026-02-16",
            "2026-02-23",
            "2026-03-02",
            "2026-03-09",
            "2026-03-16",
            "2026-03-23",
        )
    ]
    assert all(i.rule == "VITD-02" and i.kind == "vitamin_d_dose" for i in loading)
    maintenance = [i for i in p.items if i.phase == "maintenance"]
    assert [i.due for i in maintenance[:3]] == [D("2026-04-23"), D("2026-05-23"), D("2026-06-23")]
    assert maintenance[0].key == "vitamin_d_dose:c1:9" and maintenance[0].rule == "VITD-03"
    assert "VITD_LOADING_REQUIRED" in codes(p)
    assert p.labs.vitd_class == "insuffisance"


def test_vitd_03_maintenance_anchored_on_actual_last_loading_dose() -> None:
    given = doses(VITD, "2026-02-02", "2026-02-09", "2026-02-16", "2026-02-25")  # 4 doses, last one late
    f = facts(courses=(course(VITD, "2026-02-02"),), dose_list=given, labs=(lab("25ohd", 25, "ng/mL", "2026-01-20"),))
    maintenance = [i for i in plan(f, "2026-02-26").items if i.phase == "maintenance"]
    assert maintenance[0].due == D("2026-03-25") and maintenance[0].ordinal == 5


def test_vitd_03_at_or_above_30_maintenance_from_start() -> None:
    f = facts(courses=(course(VITD, "2026-01-31"),), labs=(lab("25ohd", 32, "ng/mL", "2026-01-20"),))
    dues = [i.due for i in plan(f, "2026-01-31").items if i.kind == "vitamin_d_dose"][:3]
    assert dues == [D("2026-01-31"), D("2026-02-28"), D("2026-03-31")]


def test_vitd_05_intoxication_holds_supplementation() -> None:
    f = facts(courses=(course(VITD, "2026-01-31"),), labs=(lab("25ohd", 400, "nmol/L", "2026-01-20"),))
    p = plan(f, "2026-01-31")
    assert {"VITD_INTOXICATION", "SUPPLEMENTATION_HOLD"} <= codes(p)
    dose = item(p, "vitamin_d_dose:c1:1")
    assert dose.status == "blocked" and "SUPPLEMENTATION_HOLD" in dose.blocked_by


def test_vitd_06_follow_up_after_deep_deficiency() -> None:
    # < 10 ng/mL: 8 doses from 2026-02-02, loading_end 2026-03-30, follow-up 2026-06-30.
    f = facts(courses=(course(VITD, "2026-02-02"),), labs=(lab("25ohd", 8, "ng/mL", "2026-01-20"),))
    p = plan(f, "2026-02-02")
    test = item(p, "vitamin_d_test:c1:followup")
    assert (test.due, test.rule) == (D("2026-06-30"), "VITD-06")
    assert p.labs.vitd_class == "carence"


def test_dent_03_next_exam_six_months_after_last_visit() -> None:
    f = facts(
        courses=(course(),),
        dose_list=doses(OP, "2026-01-15"),
        dental_events=(dental("exam", "2025-08-31"), dental("clearance", "2026-01-10")),
    )
    visits = [i for i in plan(f, "2026-02-01").items if i.kind == "dental_visit"]
    assert visits[0].due == D("2026-07-10") and visits[0].rule == "DENT-03" and visits[0].key == "dental_visit:3"
    assert visits[1].due == D("2027-01-10")


def test_dent_03_osteoporosis_interval_configurable() -> None:
    from scheduling.rules import RulesConfig

    cfg = RulesConfig.from_mapping({"osteoporosis_dental_months": 12})
    f = facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), dental_events=(dental("exam", "2026-01-10"),))
    assert next(i.due for i in plan(f, "2026-02-01", cfg).items if i.kind == "dental_visit") == D("2027-01-10")


def test_dent_04_extraction_during_treatment() -> None:
    """DENT-04: avoid extractions once on treatment."""
    f = facts(
        courses=(course(),), dose_list=doses(OP, "2026-01-15"), dental_events=(dental("extraction", "2026-03-01"),)
    )
    assert "AVOID_EXTRACTIONS" in codes(plan(f, "2026-03-02"))


@pytest.mark.parametrize(
    ("events", "expected", "absent"),
    [
        pytest.param(
            (("exposed_bone", "2026-03-01"),),
            {"ONJ_SUSPECTED", "REFER_SPECIALIZED_CENTRE"},
            {"ONJ_CONFIRMED"},
            id="ONJ-01-suspected-at-identification",
        ),
        pytest.param(
            (("exposed_bone", "2026-03-01"), ("exposed_bone_persisting", "2026-04-26")),
            {"ONJ_SUSPECTED"},
            {"ONJ_CONFIRMED"},
            id="ONJ-01-day-56-not-confirmed",
        ),
        pytest.param(
            (("exposed_bone", "2026-03-01"), ("exposed_bone_persisting", "2026-04-27")),
            {"ONJ_CONFIRMED"},
            {"ONJ_SUSPECTED"},
            id="ONJ-01-day-57-confirmed",
        ),
        pytest.param(
            (
                ("exposed_bone", "2026-03-01"),
                ("onj_treatment_start", "2026-03-10"),
                ("exposed_bone_persisting", "2026-04-27"),
            ),
            {"ONJ_SUSPECTED"},
            {"ONJ_CONFIRMED"},
            id="ONJ-01-clock-from-treatment-start",
        ),
    ],
)
def test_onj_01(events: tuple[tuple[str, str], ...], expected: set[str], absent: set[str]) -> None:
    f = facts(
        courses=(course(),), dose_list=doses(OP, "2026-01-15"), dental_events=tuple(dental(e, d) for e, d in events)
    )
    found = codes(plan(f, "2026-05-01"))
    assert expected <= found and not (absent & found)


def test_onj_01_review_item_at_clock_plus_57() -> None:
    f = facts(
        courses=(course(),), dose_list=doses(OP, "2026-01-15"), dental_events=(dental("exposed_bone", "2026-03-01"),)
    )
    assert item(plan(f, "2026-03-02"), "dental_visit:onj_review").due == D("2026-04-27")


def test_onj_02_radiation_excludes_definition() -> None:
    """ONJ-02: craniofacial irradiation history excludes the ONJ definition."""
    f = facts(
        pt=patient(risk_factors=("craniofacial_irradiation",)),
        courses=(course(),),
        dose_list=doses(OP, "2026-01-15"),
        dental_events=(dental("exposed_bone", "2026-03-01"),),
    )
    found = codes(plan(f, "2026-05-01"))
    assert "ONJ_DEFINITION_EXCLUDED_RADIATION" in found and "ONJ_SUSPECTED" not in found


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        pytest.param({"risk_factors": ("tobacco",)}, "ONJ_RISK_TOBACCO", id="RISK-01-tobacco"),
        pytest.param({"risk_factors": ("alcohol",)}, "ONJ_RISK_ALCOHOL", id="RISK-01-alcohol"),
        pytest.param({"risk_factors": ("head_neck_radiotherapy",)}, "ONJ_RISK_HEAD_NECK_RT", id="RISK-01-head-neck-rt"),
    ],
)
def test_risk_01_exposures(kw: dict[str, object], code: str) -> None:
    f = facts(pt=patient(**kw), courses=(course(),), dose_list=doses(OP, "2026-01-15"))
    assert code in codes(plan(f, "2026-02-01"))


@pytest.mark.parametrize(
    ("drug", "code"),
    [
        pytest.param(("methylprednisolone", 4, None), "ONJ_RISK_CORTICOSTEROIDS", id="RISK-01-corticosteroids"),
        pytest.param(("bevacizumab", None, None), "ONJ_RISK_ANTIANGIOGENIC", id="RISK-01-antiangiogenic"),
        pytest.param(("belimumab", None, None), "CONCOMITANT_BIOLOGIC_INFO", id="BIO-01-biologic-info"),
    ],
)
def test_risk_01_and_bio_01_comedications(drug: tuple[str, float | None, str | None], code: str) -> None:
    f = facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), meds=(med(drug[0], drug[1], "2025-06-01"),))
    p = plan(f, "2026-02-01")
    assert code in codes(p)
    assert not any(x.blocks for x in p.flags if x.rule == "BIO-01")


def test_bio_01_with_immunosuppression() -> None:
    meds = (med("belimumab", None, "2025-06-01"), med("azathioprine", 100, "2025-06-01"))
    f = facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), meds=meds)
    assert "INFECTION_VIGILANCE_IMMUNOSUPPRESSION" in codes(plan(f, "2026-02-01"))


@pytest.mark.parametrize(
    ("drug", "mg", "today", "expected"),
    [
        pytest.param("prednisone", 7.5, "2026-04-01", False, id="RISK-02-exactly-3-months-not-yet"),
        pytest.param("prednisone", 7.5, "2026-04-02", True, id="RISK-02-from-start+3m+1d"),
        pytest.param("prednisone", 7.0, "2026-06-01", False, id="RISK-02-below-7.5"),
        pytest.param("dexamethasone", 1.5, "2026-06-01", True, id="RISK-02-prednisone-equivalent"),
    ],
)
def test_risk_02_glucocorticoids(drug: str, mg: float, today: str, expected: bool) -> None:
    f = facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), meds=(med(drug, mg, "2026-01-01"),))
    assert ("OP_RISK_GLUCOCORTICOIDS" in codes(plan(f, today))) is expected
