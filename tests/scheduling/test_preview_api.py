"""The plan preview through the API (staff only) and through ``manage.py plan``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from scheduling.models import PlanItem

EXAMPLE_FILE = Path(settings.BASE_DIR) / "docs" / "examples" / "preview-osteoporosis.json"
# The example of the issue and of docs/plan-preview.md.
EXAMPLE: dict[str, Any] = json.loads(EXAMPLE_FILE.read_text())


def _next_injection(body: dict[str, Any]) -> dict[str, Any]:
    return next(i for i in body["items"] if i["kind"] == "injection")


@pytest.fixture
def staff_client(nurse: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(nurse)
    return client


@pytest.mark.django_db
def test_preview_api_returns_the_fixed_shape_and_stores_nothing(staff_client: APIClient) -> None:
    response = staff_client.post("/api/v1/plan/preview", EXAMPLE, format="json", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200, response.content
    body = response.json()
    injection = _next_injection(body)
    assert injection["due"] == "2026-07-15"
    assert injection["window_start"] == "2026-06-24"
    assert injection["window_end"] == "2026-08-05"
    assert injection["reminder"] == "2026-06-17"
    assert injection["status"] == "scheduled"
    assert injection["escalation"] == {"L1": "2026-07-16", "L2": "2026-08-06", "L3": "2026-08-13", "L4": "2026-11-05"}
    assert injection["rule"] == "OP-01"
    rebound = next(f for f in body["flags"] if f["code"] == "REBOUND_RISK")
    assert rebound["rule"] == "OP-05" and rebound["severity"] == "W"
    assert {"corrected_calcium_mmol_l", "calcium_status", "vitd_ng_ml", "vitd_class", "crcl_ml_min"} <= set(
        body["labs"]
    )
    assert PlanItem.objects.count() == 0


@pytest.mark.django_db
def test_preview_messages_follow_accept_language(staff_client: APIClient) -> None:
    fr = staff_client.post("/api/v1/plan/preview", EXAMPLE, format="json", HTTP_ACCEPT_LANGUAGE="fr").json()
    en = staff_client.post("/api/v1/plan/preview", EXAMPLE, format="json", HTTP_ACCEPT_LANGUAGE="en").json()
    fr_msg = next(f["message"] for f in fr["flags"] if f["code"] == "REBOUND_RISK")
    en_msg = next(f["message"] for f in en["flags"] if f["code"] == "REBOUND_RISK")
    assert "rebond fracturaire" in fr_msg
    assert fr_msg != en_msg


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"courses": [{"protocol": "denosumab_weekly", "start_date": "2026-01-15"}]}, "courses[0].protocol"),
        ({"today": "2026-02-30"}, "today"),
        ({"labs": [{"test": "calcium_total", "value": 2.3, "unit": "ng/mL", "date": "2026-01-08"}]}, "labs[0].unit"),
        ({"doses": [{"protocol": "denosumab_op_60mg_q6m", "given_at": "2025-12-01"}]}, "doses[0].given_at"),
    ],
)
def test_preview_bad_input_is_a_400_naming_the_field(
    staff_client: APIClient, patch: dict[str, Any], field: str
) -> None:
    response = staff_client.post("/api/v1/plan/preview", {**EXAMPLE, **patch}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["field"] == field


@pytest.mark.django_db
def test_preview_is_staff_only(make_patient: Any) -> None:
    from patients.models import User

    patient_user = User.objects.create_user("p@example.org", "pw-patient-123", role="patient")
    client = APIClient()
    assert client.post("/api/v1/plan/preview", EXAMPLE, format="json").status_code in (401, 403)
    client.force_authenticate(patient_user)
    assert client.post("/api/v1/plan/preview", EXAMPLE, format="json").status_code == 403


@pytest.mark.django_db
def test_preview_malformed_json_is_a_400(staff_client: APIClient) -> None:
    response = staff_client.post("/api/v1/plan/preview", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["field"] == "body"


def _manage(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plan_command_prints_the_same_json_as_the_api(tmp_path: Path) -> None:
    source = tmp_path / "facts.json"
    source.write_text(json.dumps(EXAMPLE))
    done = _manage("plan", str(source), "--lang", "en")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert _next_injection(body)["due"] == "2026-07-15"
    from scheduling.rules import preview

    assert body == json.loads(json.dumps(preview.preview(EXAMPLE, lang="en")))


def test_plan_command_bad_input_exits_2_naming_the_field(tmp_path: Path) -> None:
    source = tmp_path / "facts.json"
    source.write_text(json.dumps({**EXAMPLE, "today": "2026-13-01"}))
    done = _manage("plan", str(source))
    assert done.returncode == 2
    assert json.loads(done.stderr)["field"] == "today"
    malformed = _manage("plan", "-", stdin="{oops")
    assert malformed.returncode == 2
    assert json.loads(malformed.stderr)["field"] == "body"


@pytest.mark.django_db
def test_preview_refuses_dates_centuries_away(staff_client: APIClient) -> None:
    """A typo like year 0334 would make the planner project thousands of cycles: refused."""
    bad = {**EXAMPLE, "courses": [{"protocol": "denosumab_onco_120mg", "start_date": "0334-01-01"}], "doses": []}
    response = staff_client.post("/api/v1/plan/preview", bad, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "courses[0].start_date"
