"""CA-01 … CA-05, VITD-01 … VITD-02 arithmetic, REN-01, REN-02, ZOL-02 bands, config (P1 … P19)."""

from __future__ import annotations

import pytest

from scheduling.rules import Lab, RuleInputError, RulesConfig
from scheduling.rules.labs import (
    cockcroft_gault,
    corrected_calcium,
    ctcae_grade,
    latest_calcium,
    renal_for_denosumab,
    to_canonical,
    vitd_class,
    vitd_loading_doses,
    zoledronic_dose_mg,
)

from .test_rules_support import D, calcium, lab, patient

CFG = RulesConfig()


@pytest.mark.parametrize(
    ("ca", "alb", "expected"),
    [
        pytest.param(2.10, 28.0, 2.40, id="CA-01-seed-factor-40-minus-alb-over-40"),
        pytest.param(2.35, 40.0, 2.35, id="CA-01-albumin-40-no-change"),
        pytest.param(2.35, 41.0, 2.325, id="CA-01-albumin-41"),
        pytest.param(2.35, None, 2.35, id="CA-01-no-albumin-uncorrected"),
    ],
)
def test_ca_01_corrected_calcium(ca: float, alb: float | None, expected: float) -> None:
    assert corrected_calcium(ca, alb) == pytest.approx(expected)


def test_ca_01_units_and_same_draw_albumin() -> None:
    assert to_canonical("calcium_total", 9.0, "mg/dL") == pytest.approx(9.0 / 4.008)
    assert to_canonical("albumin", 3.5, "g/dL") == pytest.approx(35.0)
    labs = (lab("calcium_total", 8.8, "mg/dL", "2026-01-08"), lab("albumin", 3.2, "g/dL", "2026-01-08"))
    result = latest_calcium(labs, on=D("2026-01-09"), config=CFG)
    assert result is not None and result.corrected
    assert result.value_mmol_l == pytest.approx(8.8 / 4.008 + (40 - 32) / 40)
    other_day = (lab("calcium_total", 2.1, "mmol/L", "2026-01-08"), lab("albumin", 28, "g/L", "2026-01-07"))
    uncorrected = latest_calcium(other_day, on=D("2026-01-09"), config=CFG)
    assert uncorrected is not None and not uncorrected.corrected and uncorrected.value_mmol_l == 2.1


@pytest.mark.parametrize(
    ("value", "status"),
    [
        pytest.param(2.199, "low", id="CA-02-unrounded-2.199-low"),
        pytest.param(2.20, "normal", id="CA-02-2.20-normal"),
        pytest.param(2.60, "normal", id="CA-02-2.60-normal"),
        pytest.param(2.601, "high", id="CA-02-2.601-high"),
    ],
)
def test_ca_02_classification(value: float, status: str) -> None:
    result = latest_calcium(calcium("2026-01-08", value), on=D("2026-01-08"), config=CFG)
    assert result is not None and result.status == status


def test_ca_02_lab_range_overrides() -> None:
    labs = (Lab("calcium_total", 2.18, "mmol/L", D("2026-01-08"), ref_low=2.15, ref_high=2.55),)
    result = latest_calcium(labs, on=D("2026-01-08"), config=CFG)
    assert result is not None and result.status == "normal"


@pytest.mark.parametrize(
    ("value", "grade"),
    [
        pytest.param(2.10, -1, id="CA-03-G1"),
        pytest.param(1.99, -2, id="CA-03-G2"),
        pytest.param(1.70, -3, id="CA-03-G3"),
        pytest.param(1.49, -4, id="CA-03-G4"),
        pytest.param(2.40, 0, id="CA-02-normal-G0"),
        pytest.param(2.90, 1, id="CA-04-G1-up-to-2.9"),
        pytest.param(3.00, 2, id="CA-04-G2"),
        pytest.param(3.30, 3, id="CA-04-G3"),
        pytest.param(3.41, 4, id="CA-04-G4"),
    ],
)
def test_ctcae_grades(value: float, grade: int) -> None:
    assert ctcae_grade(value, 2.20, 2.60) == grade


@pytest.mark.parametrize(
    ("ng", "cls", "doses"),
    [
        pytest.param(9.9, "carence", 8, id="VITD-01-carence-below-10"),
        pytest.param(12.0, "insuffisance", 8, id="VITD-02-12-insuffisance-8-doses"),
        pytest.param(19.9, "insuffisance", 8, id="VITD-02-19.9-8-doses"),
        pytest.param(20.0, "insuffisance", 4, id="VITD-02-20-4-doses"),
        pytest.param(29.9, "insuffisance", 4, id="VITD-02-29.9-4-doses"),
        pytest.param(30.0, "taux_recommandes", 0, id="VITD-01-30-recommended"),
        pytest.param(70.0, "taux_recommandes", 0, id="VITD-01-70-recommended"),
        pytest.param(70.1, "au_dessus_recommande", 0, id="VITD-01-above-70"),
        pytest.param(150.1, "intoxication_possible", 0, id="VITD-05-above-150"),
    ],
)
def test_vitd_01_02_class_and_doses(ng: float, cls: str, doses: int) -> None:
    assert vitd_class(ng) == cls
    assert vitd_loading_doses(ng) == doses


def test_vitd_01_nmol_conversion() -> None:
    assert to_canonical("25ohd", 75, "nmol/L") == 30.0
    assert vitd_class(to_canonical("25ohd", 24.9, "nmol/L")) == "carence"


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        pytest.param(
            {"age_years": 80, "weight_kg": 60.0, "creatinine_umol_l": 100.0, "sex": "F"},
            (140 - 80) * 60 * 1.04 / 100,
            id="REN-01-umol-female-k1.04",
        ),
        pytest.param(
            {"age_years": 80, "weight_kg": 60.0, "creatinine_umol_l": 100.0, "sex": "M"},
            (140 - 80) * 60 * 1.23 / 100,
            id="REN-01-umol-male-k1.23",
        ),
        pytest.param(
            {"age_years": 70, "weight_kg": 72.0, "creatinine_umol_l": 1.2 * 88.4, "sex": "F", "unit": "mg/dL"},
            (140 - 70) * 72 / (72 * 1.2) * 0.85,
            id="REN-01-mg-dl-female-0.85",
        ),
    ],
)
def test_ren_01_cockcroft_gault(kw: dict[str, object], expected: float) -> None:
    assert cockcroft_gault(**kw) == pytest.approx(expected)  # type: ignore[arg-type]


def test_ren_02_egfr_first_then_crcl_then_unknown() -> None:
    labs = (lab("egfr", 45, "mL/min/1.73m2", "2026-01-01"),)
    assert renal_for_denosumab(patient(), labs, on=D("2026-06-01"), config=CFG).value == 45
    assert renal_for_denosumab(patient(), (), on=D("2026-06-01"), config=CFG).value == 82
    old = (lab("egfr", 45, "mL/min/1.73m2", "2025-05-31"),)
    no_egfr = patient(egfr_ml_min=None, crcl_ml_min=50.0)
    assert renal_for_denosumab(no_egfr, old, on=D("2026-06-01"), config=CFG).source == "crcl"
    unknown = renal_for_denosumab(patient(egfr_ml_min=None), old, on=D("2026-06-01"), config=CFG)
    assert unknown.source == "unknown" and not unknown.known


@pytest.mark.parametrize(
    ("crcl", "dose"),
    [
        pytest.param(60.1, 4.0, id="ZOL-02-above-60"),
        pytest.param(60.0, 3.5, id="ZOL-02-60.0"),
        pytest.param(59.9, 3.5, id="ZOL-02-59.9"),
        pytest.param(50.0, 3.5, id="ZOL-02-50"),
        pytest.param(49.9, 3.3, id="ZOL-02-49.9"),
        pytest.param(40.0, 3.3, id="ZOL-02-40"),
        pytest.param(39.92, 3.0, id="ZOL-02-39.92-no-rounding"),
        pytest.param(30.0, 3.0, id="ZOL-02-30"),
        pytest.param(29.9, None, id="ZOL-03-29.9-contraindicated"),
    ],
)
def test_zol_02_bands(crcl: float, dose: float | None) -> None:
    assert zoledronic_dose_mg(crcl) == dose


def test_config_defaults_are_the_table_policies() -> None:
    c = RulesConfig()
    assert (c.timezone, c.onco_monthly_interval, c.oral_consolidation_months) == ("Europe/Paris", "28d", 12)
    assert (c.calcium_low_mmol_l, c.calcium_high_mmol_l, c.calcium_max_age_days) == (2.20, 2.60, 30)
    assert (c.elderly_age, c.ckd_egfr_ml_min, c.notify_hour, c.osteoporosis_dental_months) == (75, 60.0, 9, 6)
    assert (c.op_reminder_days, c.op_window_days, c.op_escalation_days) == (28, 21, (1, 22, 29, 113))
    assert (c.vitd_block_below_ng_ml, c.vitd_warn_below_ng_ml, c.vitd_followup_months) == (20.0, 30.0, 3)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({"nope": 1}, "nope", id="config-unknown-key"),
        pytest.param({"onco_monthly_interval": "3m"}, "onco_monthly_interval", id="config-P7-choice"),
        pytest.param({"oral_consolidation_months": 13}, "oral_consolidation_months", id="config-P11-choice"),
        pytest.param({"oral_consolidation_months": "12"}, "oral_consolidation_months", id="config-type"),
        pytest.param({"timezone": "Mars/Olympus"}, "timezone", id="config-P1-timezone"),
        pytest.param({"notify_hour": 24}, "notify_hour", id="config-P4-hour"),
        pytest.param({"calcium_high_mmol_l": 2.1}, "calcium_high_mmol_l", id="config-P12-range"),
        pytest.param({"month_end_rule": "overflow"}, "month_end_rule", id="config-P2-clamp-only"),
        pytest.param({"op_escalation_days": [1, 29, 22, 113]}, "op_escalation_days", id="config-P6-order"),
    ],
)
def test_config_from_mapping_names_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(RuleInputError) as err:
        RulesConfig.from_mapping(data)
    assert err.value.field == field


def test_config_from_mapping_accepts_alternatives() -> None:
    c = RulesConfig.from_mapping(
        {
            "onco_monthly_interval": "1m",
            "oral_consolidation_months": 24,
            "elderly_age": 65,
            "calcium_low_mmol_l": 2.15,
            "op_escalation_days": [1, 22, 29, 113],
        }
    )
    assert (c.onco_monthly_interval, c.oral_consolidation_months, c.elderly_age) == ("1m", 24, 65)
    assert c.op_escalation_days == (1, 22, 29, 113)
