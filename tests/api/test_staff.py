"""Staff endpoints: patients with search and filters, courses, doses, labs, dental events, co-medications,
appointments, the worklist, escalations and the plan preview — each write through its service."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from tests.api.conftest import World


def test_patient_list_search_and_filters(world: World) -> None:
    from patients import services

    nurse = world.users["nurse1"]
    services.patient_create(
        care_team=world.team1,
        by=nurse,
        first_name="Colette",
        last_name="Caron",
        birth_date=timezone.localdate() - timedelta(days=365 * 70),
        sex="F",
    )
    client = world.client("nurse1")

    def ids(query: str) -> set[str]:
        response = client.get(f"/api/v1/patients{query}")
        assert response.status_code == 200, response.content
        return {p["last_name"] for p in response.json()["results"]}

    assert ids("") == {"Arnaud", "Caron"}
    assert ids("?search=arn") == {"Arnaud"}
    assert ids("?search=1956-04-12") == {"Arnaud"}
    assert ids("?protocol=denosumab_op_60mg_q6m") == {"Arnaud"}
    assert ids("?overdue=true") == {"Arnaud"}
    assert ids("?overdue=false") == {"Caron"}
    assert ids("?blocked=true") == set()
    bad = client.get("/api/v1/patients?overdue=maybe")
    assert bad.status_code == 400 and bad.json()["field"] == "overdue"
    assert world.client("nurse2").get("/api/v1/patients").json()["results"][0]["last_name"] == "Bernard"


def test_patient_create_and_update_replan(world: World) -> None:
    client = world.client("nurse1")
    created = client.post(
        "/api/v1/patients",
        {"first_name": "Denise", "last_name": "Dupont", "birth_date": "1950-02-01", "sex": "F"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["care_team"] == str(world.team1.public_id)
    other_team = client.post(
        "/api/v1/patients",
        {
            "care_team": str(world.team2.public_id),
            "first_name": "X",
            "last_name": "Y",
            "birth_date": "1950-02-01",
            "sex": "F",
        },
        format="json",
    )
    assert other_team.status_code == 400 and other_team.json()["field"] == "care_team"
    patched = client.patch(f"/api/v1/patients/{created.json()['id']}", {"weight_kg": "58.5"}, format="json")
    assert patched.status_code == 200 and patched.json()["weight_kg"] == "58.5"
    future = client.patch(f"/api/v1/patients/{created.json()['id']}", {"birth_date": "2999-01-01"}, format="json")
    assert future.status_code == 400 and future.json()["field"] == "birth_date"


def test_stopping_denosumab_returns_the_consolidation_scheduled(world: World) -> None:
    response = world.client("nurse1").post(
        f"/api/v1/courses/{world.course_a.public_id}/stop",
        {"stop_date": timezone.localdate().isoformat(), "reason": "5 years reached"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["course"]["stop_date"] == timezone.localdate().isoformat()
    assert body["course"]["consolidation"] == "zoledronic_op_5mg"
    consolidation = [i for i in body["consolidation"] if i["kind"] == "consolidation"]
    assert consolidation and consolidation[0]["protocol"] == "zoledronic_op_5mg"
    again = world.client("nurse1").post(
        f"/api/v1/courses/{world.course_a.public_id}/stop",
        {"stop_date": timezone.localdate().isoformat(), "reason": "again"},
        format="json",
    )
    assert again.status_code == 400 and again.json()["code"] == "already_stopped"


def test_course_start_and_void(world: World) -> None:
    client = world.client("nurse1")
    started = client.post(
        f"/api/v1/patients/{world.patient_a.public_id}/courses",
        {"protocol": "vitamin_d_50000iu", "start_date": timezone.localdate().isoformat()},
        format="json",
    )
    assert started.status_code == 201, started.content
    assert started.json()["indication"] == "osteoporosis"
    voided = client.post(f"/api/v1/courses/{started.json()['id']}/void", {"reason": "wrong protocol"}, format="json")
    assert voided.status_code == 200 and voided.json()["voided"] is True
    listed = client.get(f"/api/v1/patients/{world.patient_a.public_id}/courses").json()
    assert {c["id"] for c in listed} == {str(world.course_a.public_id), started.json()["id"]}


def test_dose_record_with_lot_and_site_then_void_replans(world: World) -> None:
    from scheduling.models import PlanItem

    client = world.client("nurse1")
    body = {
        "course": str(world.course_a.public_id),
        "product": "denosumab",
        "dose_value": "60",
        "dose_unit": "mg",
        "route": "SC",
        "given_at": (timezone.now() - timedelta(minutes=10)).isoformat(),
        "injection_site": "arm_left",
        "lot_number": "LOT-9",
    }
    recorded = client.post(f"/api/v1/patients/{world.patient_a.public_id}/doses", body, format="json")
    assert recorded.status_code == 201, recorded.content
    assert recorded.json()["lot_number"] == "LOT-9" and recorded.json()["injection_site"] == "arm_left"
    world.item_a.refresh_from_db()
    assert world.item_a.status == "done"
    assert PlanItem.objects.filter(patient=world.patient_a, kind="injection", status="scheduled").exists()
    blank = client.post(f"/api/v1/doses/{recorded.json()['id']}/void", {"reason": ""}, format="json")
    assert blank.status_code == 400 and blank.json()["field"] == "reason"
    voided = client.post(f"/api/v1/doses/{recorded.json()['id']}/void", {"reason": "entered twice"}, format="json")
    assert voided.status_code == 200 and voided.json()["voided"] is True
    world.item_a.refresh_from_db()
    assert world.item_a.status.startswith("overdue")


def test_labs_dental_events_and_comedications(world: World) -> None:
    client = world.client("nurse1")
    base = f"/api/v1/patients/{world.patient_a.public_id}"
    lab = client.post(
        f"{base}/labs",
        {
            "test": "25ohd",
            "value": "75",
            "unit": "nmol/L",
            "drawn_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        },
        format="json",
    )
    assert lab.status_code == 201, lab.content
    assert lab.json()["unit_normalised"] == "ng/mL" and lab.json()["unit"] == "nmol/L"
    assert client.post(f"/api/v1/labs/{lab.json()['id']}/void", {"reason": "x"}, format="json").status_code == 200
    dental = client.post(
        f"{base}/dental-events", {"event": "extraction", "date": timezone.localdate().isoformat()}, format="json"
    )
    assert dental.status_code == 201 and dental.json()["event"] == "extraction"
    assert (
        client.post(f"/api/v1/dental-events/{dental.json()['id']}/void", {"reason": "x"}, format="json").status_code
        == 200
    )
    comed = client.post(
        f"{base}/comedications",
        {"name": "bevacizumab", "drug_class": "antiangiogenic", "start_date": "2026-01-01"},
        format="json",
    )
    assert comed.status_code == 201
    assert (
        client.post(f"/api/v1/comedications/{comed.json()['id']}/void", {"reason": "x"}, format="json").status_code
        == 200
    )
    assert len(client.get(f"{base}/labs").json()) == 3
    assert len(client.get(f"{base}/dental-events").json()) == 3
    assert len(client.get(f"{base}/comedications").json()) == 2
    assert client.get(f"{base}/booklet").status_code == 200
    assert client.get(f"{base}/plan").status_code == 200


def test_appointments_book_move_cancel_with_out_of_window_override(world: World) -> None:
    from scheduling.models import PlanItem

    client = world.client("nurse1")
    assert (
        client.post(
            f"/api/v1/appointments/{world.appointment_a.public_id}/cancel", {"reason": "moved away"}, format="json"
        ).status_code
        == 200
    )
    item = world.item_a
    late = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    refused = client.post(
        "/api/v1/appointments",
        {"plan_item": str(item.public_id), "starts_at": late.isoformat()},
        format="json",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert refused.status_code == 400
    assert refused.json()["field"] == "starts_at" and refused.json()["code"] == "out_of_window"
    booked = client.post(
        "/api/v1/appointments",
        {"plan_item": str(item.public_id), "starts_at": late.isoformat(), "out_of_window_reason": "first free slot"},
        format="json",
    )
    assert booked.status_code == 201, booked.content
    assert booked.json()["out_of_window_reason"] == "first free slot"
    moved = client.post(
        f"/api/v1/appointments/{booked.json()['id']}/move",
        {"starts_at": (late + timedelta(hours=2)).isoformat(), "out_of_window_reason": "later"},
        format="json",
    )
    assert moved.status_code == 200 and moved.json()["sequence"] == 1
    listed = client.get(f"/api/v1/appointments?patient={world.patient_a.public_id}&status=booked").json()
    assert [a["id"] for a in listed["results"]] == [booked.json()["id"]]
    assert client.get(f"/api/v1/appointments/{booked.json()['id']}").json()["status"] == "booked"
    twice = client.post(
        "/api/v1/appointments",
        {"plan_item": str(item.public_id), "starts_at": late.isoformat(), "out_of_window_reason": "x"},
        format="json",
    )
    assert twice.status_code == 409
    assert PlanItem.objects.filter(pk=item.pk).exists()


def test_worklist_is_ranked_by_risk_and_explains_blocks(world: World) -> None:
    body = world.client("nurse1").get("/api/v1/worklist", HTTP_ACCEPT_LANGUAGE="en").json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row["patient"]["id"] == str(world.patient_a.public_id)
    assert row["rebound_risk"] is True and row["days_late"] > 29
    assert {e["level"] for e in row["escalations"]} >= {"L1", "L2"}
    theirs = world.client("nurse2").get("/api/v1/worklist").json()["results"]
    assert {r["patient"]["id"] for r in theirs} <= {str(world.patient_b.public_id)}


def test_escalations_acknowledge_and_resolve(world: World) -> None:
    client = world.client("nurse1")
    listed = client.get("/api/v1/escalations?open=true").json()
    assert str(world.escalation_a.public_id) in {e["id"] for e in listed["results"]}
    ack = client.post(f"/api/v1/escalations/{world.escalation_a.public_id}/acknowledge", format="json")
    assert ack.status_code == 200
    assert ack.json()["acknowledged_by"] == str(world.users["nurse1"].public_id)
    resolved = client.post(
        f"/api/v1/escalations/{world.escalation_a.public_id}/resolve", {"resolution": "deferred"}, format="json"
    )
    assert resolved.status_code == 200 and resolved.json()["resolution"] == "deferred"
    again = client.post(f"/api/v1/escalations/{world.escalation_a.public_id}/acknowledge", format="json")
    assert again.status_code == 400 and again.json()["code"] == "resolved"
    assert client.get("/api/v1/escalations?level=L9").status_code == 400


def test_plan_preview_still_works_and_stores_nothing(world: World) -> None:
    import json
    from pathlib import Path

    from django.conf import settings

    from scheduling.models import PlanItem

    example = json.loads((Path(settings.BASE_DIR) / "docs" / "examples" / "preview-osteoporosis.json").read_text())
    count = PlanItem.objects.count()
    response = world.client("physician2").post("/api/v1/plan/preview", example, format="json")
    assert response.status_code == 200 and response.json()["items"]
    assert PlanItem.objects.count() == count
    assert world.client("patient_a").post("/api/v1/plan/preview", example, format="json").status_code == 403


def test_care_teams_are_mine_only(world: World, settings: Any) -> None:
    names = [t["name"] for t in world.client("admin2").get("/api/v1/care-teams").json()]
    assert names == ["Oncologie Bordeaux"]
