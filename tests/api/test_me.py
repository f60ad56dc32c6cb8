"""The patient's own endpoints: profile and preferences, booklet, plan, vitamin D, devices, iCal link, export."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from tests.api.conftest import World


def test_profile_and_preferences_update_in_one_patch(world: World) -> None:
    client = world.client("patient_a")
    response = client.patch(
        "/api/v1/me",
        {
            "phone": "+33600000000",
            "timezone": "America/Montreal",
            "language": "fr",
            "preferences": {
                "channels": ["email", "fcm"],
                "time_of_day": "08:30",
                "quiet_start": "22:00",
                "quiet_end": "07:00",
            },
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["timezone"] == "America/Montreal" and body["language"] == "fr"
    assert body["preferences"]["channels"] == ["email", "fcm"]
    assert body["preferences"]["time_of_day"] == "08:30:00" and body["preferences"]["quiet_end"] == "07:00:00"
    world.patient_a.refresh_from_db()
    assert world.patient_a.phone == "+33600000000"
    # A later PATCH of one preference keeps the others.
    again = client.patch("/api/v1/me", {"preferences": {"time_of_day": "10:00"}}, format="json").json()
    assert again["preferences"]["channels"] == ["email", "fcm"] and again["preferences"]["quiet_start"] == "22:00:00"


def test_profile_refuses_bad_values_and_identity_fields(world: World) -> None:
    client = world.client("patient_a")
    bad_tz = client.patch("/api/v1/me", {"timezone": "Mars/Olympus"}, format="json", HTTP_ACCEPT_LANGUAGE="en")
    assert bad_tz.status_code == 400 and bad_tz.json()["field"] == "timezone"
    half_quiet = client.patch("/api/v1/me", {"preferences": {"quiet_start": "22:00"}}, format="json")
    assert half_quiet.status_code == 400 and half_quiet.json()["field"] == "preferences.quiet_end"
    client.patch("/api/v1/me", {"last_name": "Changed", "birth_date": "2000-01-01"}, format="json")
    world.patient_a.refresh_from_db()
    assert world.patient_a.last_name == "Arnaud"


def test_booklet_shows_voided_entries_as_voided(world: World) -> None:
    from patients import services

    services.lab_void(lab=world.lab_a, reason="wrong patient's tube", by=world.users["nurse1"])
    body = world.client("patient_a").get("/api/v1/me/booklet").json()
    labs = {row["id"]: row for row in body["labs"]}
    voided = labs[str(world.lab_a.public_id)]
    assert voided["voided"] is True and voided["void_reason"] == "wrong patient's tube"
    assert any(not row["voided"] for row in body["labs"])
    assert [d["id"] for d in body["doses"]] == [str(world.dose_a.public_id)]
    assert body["dental_events"] and body["comedications"] and body["courses"]


def test_plan_items_have_windows_statuses_and_explained_flags(world: World) -> None:
    en = world.client("patient_a").get("/api/v1/me/plan").json()  # patient A's language is English
    injection = next(i for i in en["items"] if i["id"] == str(world.item_a.public_id))
    assert injection["status"].startswith("overdue_")
    assert injection["window_start"] < injection["due"] < injection["window_end"]
    assert injection["flags"] and all(f["message"] and f["message"] != f["code"] for f in injection["flags"])
    assert en["language"] == "en"
    fr = world.client("patient_a").get("/api/v1/me/plan", HTTP_ACCEPT_LANGUAGE="fr").json()
    fr_injection = next(i for i in fr["items"] if i["id"] == str(world.item_a.public_id))
    assert fr_injection["flags"][0]["message"] != injection["flags"][0]["message"]
    rebound = [f for f in en["flags"] + injection["flags"] if f["code"] == "REBOUND_RISK"]
    assert all("rebound" in f["message"].lower() for f in rebound)


def test_self_reported_vitamin_d_is_recorded_as_such(world: World) -> None:
    from patients.models import DoseRecord

    taken = timezone.now() - timedelta(hours=3)
    response = world.client("patient_a").post(
        "/api/v1/me/vitamin-d-doses", {"dose_iu": 50000, "taken_at": taken.isoformat()}, format="json"
    )
    assert response.status_code == 201, response.content
    dose = DoseRecord.objects.get(public_id=response.json()["id"])
    assert (dose.product, dose.dose_unit, dose.route, dose.source) == ("cholecalciferol", "IU", "PO", "self_reported")
    assert dose.patient == world.patient_a and dose.recorded_by == world.users["patient_a"]


def test_self_reported_vitamin_d_refuses_implausible_or_future_doses(world: World) -> None:
    from patients.models import DoseRecord

    client = world.client("patient_a")
    count = DoseRecord.objects.count()
    too_much = client.post(
        "/api/v1/me/vitamin-d-doses", {"dose_iu": 500000, "taken_at": timezone.now().isoformat()}, format="json"
    )
    assert too_much.status_code == 400 and too_much.json()["field"] == "dose_iu"
    future = client.post(
        "/api/v1/me/vitamin-d-doses",
        {"dose_iu": 1000, "taken_at": (timezone.now() + timedelta(days=1)).isoformat()},
        format="json",
    )
    assert future.status_code == 400 and future.json()["field"] == "taken_at"
    assert DoseRecord.objects.count() == count


def test_devices_register_list_and_remove(world: World) -> None:
    from notifications.models import Device

    client = world.client("patient_a")
    created = client.post("/api/v1/me/devices", {"channel": "apns", "endpoint": "apns-token-123"}, format="json")
    assert created.status_code == 201, created.content
    device_id = created.json()["id"]
    assert {d["id"] for d in client.get("/api/v1/me/devices").json()} == {device_id, str(world.device_a.public_id)}
    assert client.delete(f"/api/v1/me/devices/{device_id}").status_code == 204
    assert Device.objects.get(public_id=device_id).active is False
    bad = client.post("/api/v1/me/devices", {"channel": "webpush", "endpoint": "http://insecure"}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "endpoint"


def test_calendar_link_is_shown_when_issued_and_rotation_kills_the_old_one(world: World) -> None:
    client = world.client("patient_a")
    state = client.get("/api/v1/me/calendar-feed").json()
    assert state["active"] is True and state["url"] is None
    first = client.post("/api/v1/me/calendar-feed/rotate", {}, format="json").json()
    assert first["url"].startswith("http") and first["webcal_url"].startswith("webcal://")
    path = first["url"].split("://", 1)[1].split("/", 1)[1]
    assert client.get("/" + path).status_code == 200
    second = client.post("/api/v1/me/calendar-feed/rotate", {"precise_titles": True}, format="json").json()
    assert second["url"] != first["url"] and second["precise_titles"] is True
    assert client.get("/" + path).status_code == 404
    assert client.delete("/api/v1/me/calendar-feed").status_code == 204
    assert client.get("/api/v1/me/calendar-feed").json()["active"] is False


def test_export_holds_everything_about_me_and_nothing_about_others(world: World) -> None:
    response = world.client("patient_a").get("/api/v1/me/export")
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    body = response.json()
    assert body["patient"]["id"] == str(world.patient_a.public_id)
    assert body["account"]["email"] == "patient.a@example.org"
    assert [d["id"] for d in body["booklet"]["doses"]] == [str(world.dose_a.public_id)]
    assert {d["id"] for d in body["devices"]} == {str(world.device_a.public_id)}
    assert [a["id"] for a in body["appointments"]] == [str(world.appointment_a.public_id)]
    assert any(e["id"] == str(world.escalation_a.public_id) for e in body["escalations"])
    assert body["plan"] and body["calendar_feeds"] and body["profile_changes"]
    text = response.content.decode()
    for other in (str(world.patient_b.public_id), "Bernard", "patient.b@example.org"):
        assert other not in text
    assert "token_hash" not in text and "fcm-token-of-patient-a" not in text


def test_export_query_count_does_not_grow_with_history(world: World, django_assert_max_num_queries: Any) -> None:
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scheduling.models import PlanItem

    client = world.client("patient_a")
    with django_assert_max_num_queries(40):
        client.get("/api/v1/me/export")
    with CaptureQueriesContext(connection) as before:
        client.get("/api/v1/me/export")
    # More late items (their days late are counted on the patient's date, not read per item).
    extra = [
        PlanItem.objects.create(
            patient=world.patient_a,
            key=f"dental_visit:extra:{n}",
            kind="dental_visit",
            rule="DENT-01",
            due=world.item_a.due - timedelta(days=n),
            status="overdue_L1",
        )
        for n in range(5)
    ]
    with CaptureQueriesContext(connection) as after:
        body = client.get("/api/v1/me/export").json()
    assert len(after.captured_queries) == len(before.captured_queries)
    late = {row["id"]: row["days_late"] for row in body["plan"]}
    first = late[str(world.item_a.public_id)]
    assert first > 0 and [late[str(item.public_id)] for item in extra] == [first + n for n in range(5)]
