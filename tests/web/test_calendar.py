"""The injection calendar: views, the items to book, booking (window, reason, conflicts), move, cancel."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.test import Client

from scheduling.appointments import appointment_book
from scheduling.models import Appointment, PlanItem
from tests.web.scenario import Clinic, at, today

pytestmark = pytest.mark.django_db


def injection(patient: object) -> PlanItem:
    return PlanItem.objects.filter(patient=patient, kind="injection", closed_at__isnull=True).order_by("due").first()  # type: ignore[return-value]


def book(client: Client, item: PlanItem, day: date, slot: str, nurse_pk: int, reason: str = "") -> object:
    return client.post(
        f"/calendar/book/{item.public_id}/",
        {"day": day.isoformat(), "nurse": nurse_pk, "slot": slot, "duration": 30, "out_of_window_reason": reason},
    )


@pytest.mark.parametrize("view", ["day", "week", "month"])
def test_day_week_and_month_show_the_teams_appointments(clinic: Clinic, nurse_client: Client, view: str) -> None:
    day = today() + timedelta(days=2)
    appt = appointment_book(
        plan_item=injection(clinic.late),
        starts_at=at(day, 10),
        nurse=clinic.colleague,
        by=clinic.nurse,
        out_of_window_reason="late",
    )
    response = nurse_client.get(f"/calendar/?view={view}&date={day.isoformat()}")
    assert response.status_code == 200
    page = response.content.decode()
    assert f'id="appt-{appt.public_id}"' in page and "MARTIN" in page
    if view == "day":
        assert [getattr(n, "pk", None) for n in response.context["columns"]] == [clinic.nurse.pk, clinic.colleague.pk]


def test_items_to_book_are_the_unbooked_ones_most_urgent_first(clinic: Clinic, nurse_client: Client) -> None:
    unbooked = nurse_client.get("/calendar/").context["unbooked"]
    assert [i.patient for i in unbooked] == [clinic.late, clinic.slightly_late, clinic.blocked]
    appointment_book(
        plan_item=injection(clinic.late),
        starts_at=at(today() + timedelta(days=1), 9),
        nurse=clinic.nurse,
        by=clinic.nurse,
        out_of_window_reason="late",
    )
    unbooked = nurse_client.get("/calendar/").context["unbooked"]
    assert clinic.late not in [i.patient for i in unbooked]


def test_booking_shows_the_window_and_outside_it_asks_for_a_reason(clinic: Clinic, nurse_client: Client) -> None:
    item = injection(clinic.late)
    page = nurse_client.get(f"/calendar/book/{item.public_id}/")
    assert page.status_code == 200 and page.context["window_first"] == item.window_start
    day = today() + timedelta(days=1)
    refused = book(nurse_client, item, day, "09:00", clinic.nurse.pk)
    assert refused.status_code == 200  # type: ignore[attr-defined]
    form = refused.context["form"]  # type: ignore[attr-defined]
    assert "out_of_window_reason" in form.errors and "hors de la fenêtre" in form.errors["out_of_window_reason"][0]
    assert not Appointment.objects.exists()
    booked = book(nurse_client, item, day, "09:00", clinic.nurse.pk, reason="40 jours de retard")
    assert booked.status_code == 302 and f"date={day.isoformat()}" in booked["Location"]  # type: ignore[index]
    appt = Appointment.objects.get(plan_item=item)
    assert appt.nurse == clinic.nurse and appt.starts_at == at(day, 9)
    assert appt.ends_at - appt.starts_at == timedelta(minutes=30)
    assert appt.out_of_window_reason == "40 jours de retard"
    # Booked once: the booking page now sends the nurse to the appointment.
    again = nurse_client.get(f"/calendar/book/{item.public_id}/")
    assert again.status_code == 302 and f"/calendar/appointments/{appt.public_id}/" in again["Location"]


def test_booking_inside_the_window_needs_no_reason(clinic: Clinic, nurse_client: Client) -> None:
    item = injection(clinic.slightly_late)
    day = today() + timedelta(days=1)
    assert item.window_end is not None and day <= item.window_end
    assert book(nurse_client, item, day, "11:30", clinic.nurse.pk).status_code == 302  # type: ignore[attr-defined]
    assert Appointment.objects.get(plan_item=item).out_of_window_reason == ""


def test_a_taken_slot_is_shown_and_a_clash_is_a_conflict_not_a_booking(clinic: Clinic, nurse_client: Client) -> None:
    day = today() + timedelta(days=1)
    appointment_book(
        plan_item=injection(clinic.late),
        starts_at=at(day, 10),
        nurse=clinic.nurse,
        by=clinic.nurse,
        out_of_window_reason="late",
    )
    item = injection(clinic.slightly_late)
    page = nurse_client.get(f"/calendar/book/{item.public_id}/?day={day.isoformat()}&nurse={clinic.nurse.pk}")
    ten = next(s for s in page.context["slots"] if s.at.hour == 10 and s.at.minute == 0)
    assert not ten.free and "MARTIN" in ten.why
    clash = book(nurse_client, item, day, "10:00", clinic.nurse.pk)
    assert clash.status_code == 200 and clash.context["conflict"]  # type: ignore[attr-defined]
    assert "slot" in clash.context["form"].errors  # type: ignore[attr-defined]
    assert not Appointment.objects.filter(plan_item=item).exists()


def test_bad_booking_input_names_the_fields(clinic: Clinic, nurse_client: Client) -> None:
    item = injection(clinic.slightly_late)
    response = nurse_client.post(f"/calendar/book/{item.public_id}/", {"day": "31/02", "slot": "25:00"})
    assert response.status_code == 200
    assert {"day", "slot", "nurse"} <= set(response.context["form"].errors)
    assert not Appointment.objects.exists()


def test_move_and_cancel_with_conflicts_shown(clinic: Clinic, nurse_client: Client) -> None:
    day = today() + timedelta(days=1)
    first = appointment_book(
        plan_item=injection(clinic.late),
        starts_at=at(day, 10),
        nurse=clinic.nurse,
        by=clinic.nurse,
        out_of_window_reason="late",
    )
    second = appointment_book(
        plan_item=injection(clinic.slightly_late), starts_at=at(day, 14), nurse=clinic.nurse, by=clinic.nurse
    )
    url = f"/calendar/appointments/{second.public_id}/"
    assert nurse_client.get(url).status_code == 200
    clash = nurse_client.post(url + "move/", {"day": day.isoformat(), "slot": "10:00", "duration": 30})
    assert clash.status_code == 200 and clash.context["conflict"]
    second.refresh_from_db()
    assert second.starts_at == at(day, 14) and second.sequence == 0
    moved = nurse_client.post(url + "move/", {"day": day.isoformat(), "slot": "15:30", "duration": 45})
    assert moved.status_code == 302
    second.refresh_from_db()
    assert second.starts_at == at(day, 15) + timedelta(minutes=30) and second.sequence == 1
    assert second.ends_at - second.starts_at == timedelta(minutes=45)
    no_reason = nurse_client.post(url + "cancel/", {"reason": ""})
    assert no_reason.status_code == 200 and "reason" in no_reason.context["cancel_form"].errors
    assert Appointment.objects.get(pk=second.pk).status == Appointment.Status.BOOKED
    cancelled = nurse_client.post(url + "cancel/", {"reason": "Patiente hospitalisée"})
    assert cancelled.status_code == 302
    assert Appointment.objects.get(pk=second.pk).status == Appointment.Status.CANCELLED
    assert Appointment.objects.get(pk=first.pk).status == Appointment.Status.BOOKED
