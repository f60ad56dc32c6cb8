"""Bad input: one problem-details shape naming the field, in the reader's language; nothing stored changes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.api.conftest import World
from tests.api.test_permissions import snapshot


def dose(world: World, **extra: Any) -> dict[str, Any]:
    body = {
        "course": str(world.course_a.public_id),
        "product": "denosumab",
        "dose_value": "60",
        "dose_unit": "mg",
        "route": "SC",
        "given_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "injection_site": "abdomen",
        "lot_number": "LOT-1",
        "override_reason": "checked",
    }
    body.update(extra)
    return body


def lab(**extra: Any) -> dict[str, Any]:
    body = {
        "test": "calcium_total",
        "value": "2.31",
        "unit": "mmol/L",
        "drawn_at": (timezone.now() - timedelta(hours=2)).isoformat(),
    }
    body.update(extra)
    return body


def post(world: World, path: str, body: Any, lang: str = "en", **kwargs: Any) -> Any:
    return world.client("nurse1").post(path, body, HTTP_ACCEPT_LANGUAGE=lang, **kwargs)


CASES = {
    "future dose": (
        "doses",
        lambda w: dose(w, given_at=(timezone.now() + timedelta(days=3)).isoformat()),
        "given_at",
        "future",
    ),
    "unknown dose unit": ("doses", lambda w: dose(w, dose_unit="ml"), "dose_unit", "valid choice"),
    "wrong unit for the product": ("doses", lambda w: dose(w, dose_unit="IU"), "dose_unit", "dosed in"),
    "implausible dose": ("doses", lambda w: dose(w, dose_value="90"), "dose_value", "60"),
    "missing lot number": ("doses", lambda w: dose(w, lot_number=""), "lot_number", "lot number"),
    "course of another patient": (
        "doses",
        lambda w: dose(w, course=str(w.course_b.public_id)),
        "course",
        "no such course",
    ),
    "naive instant": ("doses", lambda w: dose(w, given_at="2026-01-01T10:00:00"), "given_at", "offset"),
    "future lab": (
        "labs",
        lambda w: lab(drawn_at=(timezone.now() + timedelta(days=2)).isoformat()),
        "drawn_at",
        "future",
    ),
    "unknown lab unit": ("labs", lambda w: lab(unit="furlongs"), "unit", "does not fit"),
    "lab out of range": ("labs", lambda w: lab(value="9.9"), "value", "plausible range"),
    "unknown lab test": ("labs", lambda w: lab(test="unobtainium"), "test", "valid choice"),
    "future dental event": (
        "dental-events",
        lambda w: {"event": "exam", "date": str(timezone.localdate() + timedelta(days=3))},
        "date",
        "future",
    ),
    # Found by schemathesis: a course "started" in 334 made the planner walk 17 centuries.
    "ancient course start": (
        "courses",
        lambda w: {"protocol": "denosumab_onco_120mg", "start_date": "0334-11-06"},
        "start_date",
        "1980",
    ),
    "ancient dose": ("doses", lambda w: dose(w, given_at="0905-04-04T10:00:00+01:00"), "given_at", "1980"),
    "unknown course protocol": (
        "courses",
        lambda w: {"protocol": "aspirin", "start_date": "2026-01-01"},
        "protocol",
        "valid choice",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(world: World, case: str) -> None:
    kind, make, field, words = CASES[case]
    before = snapshot()
    response = post(world, f"/api/v1/patients/{world.patient_a.public_id}/{kind}", make(world), format="json")
    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail", "field", "code"} <= set(body)
    assert body["field"] == field, body
    assert words.lower() in body["detail"].lower(), body
    assert field in body.get("errors", {field: []})
    assert snapshot() == before


def test_a_dose_for_a_stopped_course_is_refused(world: World) -> None:
    from patients import services

    services.course_stop(
        course=world.course_a,
        stop_date=timezone.localdate() - timedelta(days=2),
        reason="patient choice",
        consolidation="zoledronic_op_5mg",
        by=world.users["nurse1"],
    )
    before = snapshot()
    response = post(world, f"/api/v1/patients/{world.patient_a.public_id}/doses", dose(world), format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "course"
    assert "stopped" in response.json()["detail"]
    assert snapshot() == before


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2", b'{"product": "denosumab",}'])
def test_malformed_json_is_400_and_changes_nothing(world: World, raw: bytes) -> None:
    before = snapshot()
    response = post(world, f"/api/v1/patients/{world.patient_a.public_id}/doses", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert response.json()["code"] == "malformed"
    assert snapshot() == before


def test_a_body_that_is_not_an_object_is_400(world: World) -> None:
    response = post(world, f"/api/v1/patients/{world.patient_a.public_id}/doses", [1, 2], format="json")
    assert response.status_code == 400


def test_unsupported_media_type_is_415_problem(world: World) -> None:
    response = post(
        world,
        f"/api/v1/patients/{world.patient_a.public_id}/doses",
        "a=b",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 415 and response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(("lang", "expected"), [("fr", "futur"), ("en", "future")])
def test_messages_follow_accept_language(world: World, lang: str, expected: str) -> None:
    body = dose(world, given_at=(timezone.now() + timedelta(days=3)).isoformat())
    response = post(world, f"/api/v1/patients/{world.patient_a.public_id}/doses", body, lang=lang, format="json")
    assert expected in response.json()["detail"]
    assert response.json()["title"] == {"fr": "Données invalides", "en": "Invalid input"}[lang]


@pytest.mark.parametrize(("lang", "expected"), [("fr", "ne convient pas"), ("en", "does not fit")])
def test_unit_messages_follow_accept_language(world: World, lang: str, expected: str) -> None:
    response = post(
        world, f"/api/v1/patients/{world.patient_a.public_id}/labs", lab(unit="g/L"), lang=lang, format="json"
    )
    assert expected in response.json()["detail"]


def test_not_found_and_unauthenticated_are_problems_too(world: World) -> None:
    missing = world.client("nurse1").get("/api/v1/patients/not-a-uuid")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    anonymous = world.client("anonymous").get("/api/v1/patients")
    assert anonymous.status_code == 401 and anonymous.json()["status"] == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
