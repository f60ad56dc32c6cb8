"""Preview JSON in/out: the brief's example end to end, and bad inputs naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from scheduling.rules import RuleInputError
from scheduling.rules.preview import parse_input, preview

from .test_rules_support import D

EXAMPLE: dict[str, Any] = {
    "today": "2026-06-01",
    "config": {"onco_monthly_interval": "28d", "oral_consolidation_months": 12},
    "patient": {
        "birth_date": "1958-04-12",
        "sex": "F",
        "timezone": "Europe/Paris",
        "egfr_ml_min": 82,
        "crcl_ml_min": None,
        "weight_kg": None,
        "dialysis": False,
        "risk_factors": ["tobacco"],
    },
    "courses": [{"protocol": "denosumab_op_60mg_q6m", "start_date": "2026-01-15", "stop": None, "response": None}],
    "doses": [{"protocol": "denosumab_op_60mg_q6m", "given_at": "2026-01-15"}],
    "labs": [{"test": "calcium_total", "value": 2.35, "unit": "mmol/L", "date": "2026-01-08"}],
    "dental": [{"event": "exam", "date": "2025-12-01"}],
    "comedications": [{"name": "prednisone", "mg_per_day": 10, "start_date": "2025-01-01"}],
}


def test_preview_example_end_to_end() -> None:
    body = preview(EXAMPLE, lang="fr")
    injection = next(i for i in body["items"] if i["kind"] == "injection")
    assert {
        k: injection[k]
        for k in (
            "protocol",
            "dose_mg",
            "due",
            "window_start",
            "window_end",
            "reminder",
            "status",
            "escalation",
            "rule",
            "blocked_by",
        )
    } == {
        "protocol": "denosumab_op_60mg_q6m",
        "dose_mg": 60,
        "due": "2026-07-15",
        "window_start": "2026-06-24",
        "window_end": "2026-08-05",
        "reminder": "2026-06-17",
        "status": "scheduled",
        "escalation": {"L1": "2026-07-16", "L2": "2026-08-06", "L3": "2026-08-13", "L4": "2026-11-05"},
        "rule": "OP-01",
        "blocked_by": [],
    }
    assert injection["key"] == "injection:course-1:2" and injection["ordinal"] == 2
    rebound = next(f for f in body["flags"] if f["code"] == "REBOUND_RISK")
    assert (rebound["rule"], rebound["severity"], rebound["blocks"], rebound["override_allowed"]) == (
        "OP-05",
        "W",
        False,
        False,
    )
    assert rebound["message"].startswith("il existe un risque de rebond fracturaire")
    # Decision: no albumin -> the measured 2.35 is reported uncorrected (the brief's 2.325 is inconsistent).
    assert body["labs"]["corrected_calcium_mmol_l"] == 2.35 and body["labs"]["calcium_corrected"] is False
    assert body["labs"]["calcium_status"] == "normal"
    assert body["labs"]["vitd_ng_ml"] is None and body["labs"]["vitd_class"] is None  # no 25-OH-D in the input
    assert body["labs"]["crcl_ml_min"] is None
    found = {f["code"] for f in body["flags"]}
    assert {"ONJ_RISK_TOBACCO", "OP_RISK_GLUCOCORTICOIDS", "ONJ_RISK_CORTICOSTEROIDS"} <= found
    en = preview(EXAMPLE, lang="en")
    assert next(f for f in en["flags"] if f["code"] == "REBOUND_RISK")["message"].startswith("There is a risk")


def test_preview_instant_given_at_uses_time_01() -> None:
    data = copy.deepcopy(EXAMPLE)
    data["doses"][0]["given_at"] = "2026-01-15T23:30:00Z"  # 00:30 CET on 2026-01-16
    facts, _, _ = parse_input(data)
    assert facts.doses[0].given_on == D("2026-01-16")
    injection = next(i for i in preview(data)["items"] if i["kind"] == "injection")
    assert injection["due"] == "2026-07-16"


def test_preview_stop_and_vitamin_d_phase() -> None:
    data = copy.deepcopy(EXAMPLE)
    data["courses"][0]["stop"] = {"date": "2026-06-01", "consolidation": "alendronate_op_70mg_weekly"}
    data["courses"].append({"protocol": "vitamin_d_50000iu", "start_date": "2026-06-01"})
    data["labs"].append({"test": "25ohd", "value": 30, "unit": "nmol/L", "date": "2026-05-20"})
    body = preview(data)
    cons = next(i for i in body["items"] if i["kind"] == "consolidation")
    assert (cons["product"], cons["due"], cons["until"]) == ("alendronate", "2026-07-15", "2027-07-15")
    assert set(cons["escalation"]) == {"L1", "L2", "L3", "L4"}
    vitd = [i for i in body["items"] if i["kind"] == "vitamin_d_dose"]
    assert [i["phase"] for i in vitd[:9]] == ["loading"] * 8 + ["maintenance"]
    assert body["labs"]["vitd_ng_ml"] == 12.0 and body["labs"]["vitd_class"] == "insuffisance"


def _patched(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(EXAMPLE)
    target: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is KeyError:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        pytest.param("courses.0.protocol", "denosumab_weekly", "courses[0].protocol", id="unknown-course-protocol"),
        pytest.param("doses.0.protocol", "aspirin", "doses[0].protocol", id="unknown-dose-protocol"),
        pytest.param("today", "2026-02-30", "today", id="impossible-today"),
        pytest.param("doses.0.given_at", "2026-13-01", "doses[0].given_at", id="impossible-given-at"),
        pytest.param("doses.0.given_at", "2026-01-15T10:00:00", "doses[0].given_at", id="instant-without-offset"),
        pytest.param("doses.0.given_at", "2025-12-01", "doses[0].given_at", id="dose-before-course-start"),
        pytest.param("labs.0.unit", "ng/mL", "labs[0].unit", id="unit-does-not-fit-test"),
        pytest.param("labs.0.test", "sodium", "labs[0].test", id="unknown-test"),
        pytest.param("labs.0.value", "2.35", "labs[0].value", id="wrong-type-value"),
        # A zero creatinine crashed Cockcroft-Gault (found by tests/scheduling/test_rules_native.py).
        pytest.param("labs.0.value", 0, "labs[0].value", id="zero-lab-value"),
        pytest.param("patient.birth_date", KeyError, "patient.birth_date", id="missing-birth-date"),
        pytest.param("patient.sex", "X", "patient.sex", id="bad-sex"),
        pytest.param("patient.dialysis", "no", "patient.dialysis", id="wrong-type-dialysis"),
        pytest.param("patient.risk_factors", ["sugar"], "patient.risk_factors[0]", id="unknown-risk-factor"),
        pytest.param("dental.0.event", "filling", "dental[0].event", id="unknown-dental-event"),
        pytest.param("comedications.0.start_date", KeyError, "comedications[0].start_date", id="missing-med-start"),
        pytest.param(
            "courses.0.stop",
            {"date": "2026-06-01", "consolidation": "denosumab_op_60mg_q6m"},
            "courses[0].stop.consolidation",
            id="bad-consolidation",
        ),
        pytest.param("config.onco_monthly_interval", "4w", "config.onco_monthly_interval", id="config-value"),
        pytest.param("config.mystery", 1, "config.mystery", id="config-unknown-key"),
        pytest.param("courses", {"a": 1}, "courses", id="courses-not-a-list"),
        pytest.param("today", KeyError, "today", id="missing-today"),
    ],
)
def test_preview_bad_input_names_the_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(RuleInputError) as err:
        parse_input(_patched(path, value))
    assert err.value.field == field


def test_preview_body_must_be_an_object() -> None:
    with pytest.raises(RuleInputError) as err:
        parse_input([])  # type: ignore[arg-type]  # the point of the test
    assert err.value.field == "body"
