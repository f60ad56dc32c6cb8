"""Booking, moving and cancelling a nurse's appointments for plan items."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine

from backend.errors import CarnetError
from patients.models import Role, StaffMembership, User
from scheduling.appointments import (
    appointment_book,
    appointment_cancel,
    appointment_move,
    appointments_close_for_items,
    appointments_reopen_for_items,
)
from scheduling.models import Appointment, ItemStatus, PlanItem
from tests.factories import CareTeamFactory, PatientFactory

from .conftest import at

pytestmark = pytest.mark.django_db
UTC = ZoneInfo("UTC")


@pytest.fixture(autouse=True)
def _clock() -> Any:
    with time_machine.travel(at("2026-06-01", 9), tick=False):
        yield


def make_item(patient: Any, **fields: Any) -> PlanItem:
    values: dict[str, Any] = {
        "key": f"injection:{fields.get('due', date(2026, 7, 15))}",
        "kind": "injection",
        "protocol": "denosumab_op_60mg_q6m",
        "product": "denosumab",
        "rule": "OP-01",
        "due": date(2026, 7, 15),
        "window_start": date(2026, 6, 24),
        "window_end": date(2026, 8, 5),
        "status": ItemStatus.SCHEDULED,
    }
    values.update(fields)
    return PlanItem.objects.create(patient=patient, **values)


@pytest.fixture
def patient(team: Any) -> Any:
    return PatientFactory(care_team=team)


@pytest.fixture
def item(patient: Any) -> PlanItem:
    return make_item(patient)


def other_nurse(team: Any, email: str = "nurse2@example.org") -> User:
    user = User.objects.create_user(email, "pw-nurse-456", role=Role.NURSE)
    StaffMembership.objects.create(user=user, care_team=team, role=Role.NURSE)
    return user


def test_book_inside_window_defaults_to_30_minutes_and_is_audited(item: PlanItem, nurse: Any) -> None:
    appt = appointment_book(plan_item=item, starts_at=at("2026-07-10", 10), nurse=nurse, by=nurse)
    appt.refresh_from_db()
    assert appt.status == Appointment.Status.BOOKED
    assert appt.ends_at - appt.starts_at == timedelta(minutes=30)
    assert appt.sequence == 0
    assert appt.care_team_id == item.patient.care_team_id
    assert appt.patient_id == item.patient_id
    assert appt.out_of_window_reason == ""
    history = appt.history.first()  # type: ignore[attr-defined]
    assert history is not None and history.history_user == nurse and history.history_type == "+"


def test_window_is_read_in_local_dates_of_the_patient(item: PlanItem, nurse: Any) -> None:
    # 00:30 in Paris on the window's first day is still the previous day in UTC: inside.
    early = datetime(2026, 6, 24, 0, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert early.astimezone(UTC).date() == date(2026, 6, 23)
    appt = appointment_book(plan_item=item, starts_at=early, nurse=nurse, by=nurse)
    assert appt.out_of_window_reason == ""
    # 23:30 the evening before (local) is outside, although UTC says nothing different.
    appointment_cancel(appointment=appt, by=nurse, reason="test")
    with pytest.raises(CarnetError) as exc:
        appointment_book(
            plan_item=item,
            starts_at=datetime(2026, 6, 23, 23, 30, tzinfo=ZoneInfo("Europe/Paris")),
            nurse=nurse,
            by=nurse,
        )
    assert exc.value.field == "starts_at" and exc.value.code == "out_of_window"


def test_out_of_window_needs_a_reason(item: PlanItem, nurse: Any) -> None:
    with pytest.raises(CarnetError) as exc:
        appointment_book(plan_item=item, starts_at=at("2026-08-20"), nurse=nurse, by=nurse)
    assert exc.value.field == "starts_at"
    assert exc.value.code == "out_of_window"
    assert "after the due window (2026-06-24 to 2026-08-05" in exc.value.message
    assert not Appointment.objects.exists()
    appt = appointment_book(
        plan_item=item,
        starts_at=at("2026-08-20"),
        nurse=nurse,
        by=nurse,
        out_of_window_reason="Patient back from abroad on 19/08",
    )
    assert appt.out_of_window_reason == "Patient back from abroad on 19/08"


def test_item_without_window_is_due_on_its_day_only(patient: Any, nurse: Any) -> None:
    check = make_item(
        patient,
        key="calcium_check:1",
        kind="calcium_check",
        due=date(2026, 7, 8),
        window_start=None,
        window_end=None,
        rule="CA-03",
    )
    with pytest.raises(CarnetError) as exc:
        appointment_book(plan_item=check, starts_at=at("2026-07-09"), nurse=nurse, by=nurse)
    assert exc.value.field == "starts_at" and "2026-07-08" in exc.value.message
    assert appointment_book(plan_item=check, starts_at=at("2026-07-08"), nurse=nurse, by=nurse).pk


def test_overlapping_booking_for_the_same_nurse_is_a_conflict(patient: Any, nurse: Any, team: Any) -> None:
    first = make_item(patient)
    second = make_item(PatientFactory(care_team=team))
    appointment_book(plan_item=first, starts_at=at("2026-07-10", 10), nurse=nurse, by=nurse)
    with pytest.raises(CarnetError) as exc:
        appointment_book(plan_item=second, starts_at=at("2026-07-10", 10).replace(minute=15), nurse=nurse, by=nurse)
    assert (exc.value.field, exc.value.code, exc.value.status) == ("starts_at", "conflict", 409)
    assert "2026-07-10 10:00" in exc.value.message  # the clash, in local time
    # Back to back is no overlap; another nurse at the same time is fine too.
    assert appointment_book(plan_item=second, starts_at=at("2026-07-10", 10).replace(minute=30), nurse=nurse, by=nurse)
    assert Appointment.objects.count() == 2


def test_cancelled_appointment_frees_the_slot(item: PlanItem, nurse: Any, team: Any) -> None:
    appt = appointment_book(plan_item=item, starts_at=at("2026-07-10"), nurse=nurse, by=nurse)
    appointment_cancel(appointment=appt, by=nurse, reason="Patient ill")
    again = appointment_book(plan_item=item, starts_at=at("2026-07-10"), nurse=nurse, by=nurse)
    assert again.pk != appt.pk


def test_one_booked_appointment_per_item(item: PlanItem, nurse: Any, team: Any) -> None:
    appointment_book(plan_item=item, starts_at=at("2026-07-10"), nurse=nurse, by=nurse)
    with pytest.raises(CarnetError) as exc:
        appointment_book(plan_item=item, starts_at=at("2026-07-11"), nurse=other_nurse(team), by=nurse)
    assert (exc.value.field, exc.value.code) == ("plan_item", "already_booked")
    assert Appointment.objects.count() == 1


def test_nurse_must_be_on_the_patients_team(item: PlanItem, nurse: Any) -> None:
    outsider = User.objects.create_user("out@example.org", "pw-out-123456", role=Role.NURSE)
    StaffMembership.objects.create(user=outsider, care_team=CareTeamFactory(), role=Role.NURSE)
    with pytest.raises(CarnetError) as exc:
        appointment_book(plan_item=item, starts_at=at("2026-07-10"), nurse=outsider, by=nurse)
    assert (exc.value.field, exc.value.status) == ("nurse", 403)
    with pytest.raises(CarnetError) as exc:
        appointment_book(plan_item=item, starts_at=at("2026-07-10"), nurse=nurse, by=outsider)
    assert exc.value.field == "by"
    assert not Appointment.objects.exists()


def test_closed_item_cannot_be_booked(patient: Any, nurse: Any) -> None:
    done = make_item(patient, status=ItemStatus.DONE, closed_at=at("2026-05-01"))
    with pytest.raises(CarnetError) as exc:
        appointment_book(plan_item=done, starts_at=at("2026-07-10"), nurse=nurse, by=nurse)
    assert (exc.value.field, exc.value.code) == ("plan_item", "closed")


def test_naive_or_backwards_times_are_refused(item: PlanItem, nurse: Any) -> None:
    with pytest.raises(CarnetError) as exc:
        appointment_book(plan_item=item, starts_at=datetime(2026, 7, 10, 10), nurse=nurse, by=nurse)
    assert exc.value.field == "starts_at"
    with pytest.raises(CarnetError) as exc:
        appointment_book(
            plan_item=item, starts_at=at("2026-07-10", 10), ends_at=at("2026-07-10", 9), nurse=nurse, by=nurse
        )
    assert exc.value.field == "ends_at"


def test_move_bumps_sequence_and_keeps_length(item: PlanItem, nurse: Any) -> None:
    appt = appointment_book(
        plan_item=item, starts_at=at("2026-07-10", 10), ends_at=at("2026-07-10", 11), nurse=nurse, by=nurse
    )
    moved = appointment_move(appointment=appt, starts_at=at("2026-07-12", 14), by=nurse)
    moved.refresh_from_db()
    assert moved.public_id == appt.public_id
    assert moved.sequence == 1
    assert (moved.starts_at, moved.ends_at) == (at("2026-07-12", 14), at("2026-07-12", 15))
    # Moving to the same time changes nothing.
    assert appointment_move(appointment=moved, starts_at=at("2026-07-12", 14), by=nurse).sequence == 1
    assert appointment_move(appointment=moved, starts_at=at("2026-07-13", 14), by=nurse).sequence == 2


def test_move_into_a_conflict_or_out_of_window_changes_nothing(item: PlanItem, nurse: Any, team: Any) -> None:
    appt = appointment_book(plan_item=item, starts_at=at("2026-07-10", 10), nurse=nurse, by=nurse)
    appointment_book(
        plan_item=make_item(PatientFactory(care_team=team)), starts_at=at("2026-07-11", 10), nurse=nurse, by=nurse
    )
    with pytest.raises(CarnetError) as exc:
        appointment_move(appointment=appt, starts_at=at("2026-07-11", 10), by=nurse)
    assert exc.value.code == "conflict"
    with pytest.raises(CarnetError) as exc:
        appointment_move(appointment=appt, starts_at=at("2026-09-01", 10), by=nurse)
    assert exc.value.code == "out_of_window"
    appt.refresh_from_db()
    assert (appt.starts_at, appt.sequence) == (at("2026-07-10", 10), 0)


def test_cancel_needs_reason_and_bumps_sequence(item: PlanItem, nurse: Any) -> None:
    appt = appointment_book(plan_item=item, starts_at=at("2026-07-10"), nurse=nurse, by=nurse)
    with pytest.raises(CarnetError) as exc:
        appointment_cancel(appointment=appt, by=nurse, reason="  ")
    assert exc.value.field == "reason"
    cancelled = appointment_cancel(appointment=appt, by=nurse, reason="Patient in hospital")
    cancelled.refresh_from_db()
    assert cancelled.status == Appointment.Status.CANCELLED
    assert cancelled.cancelled_at == at("2026-06-01", 9)
    assert cancelled.sequence == 1
    last = cancelled.history.first()  # type: ignore[attr-defined]
    assert last.history_change_reason == "Patient in hospital" and last.history_user == nurse
    with pytest.raises(CarnetError):
        appointment_move(appointment=cancelled, starts_at=at("2026-07-11"), by=nurse)


def test_closing_items_closes_their_appointments(
    patient: Any, nurse: Any, team: Any, django_assert_num_queries: Any
) -> None:
    given = make_item(patient, key="a")
    dropped = make_item(patient, key="b", due=date(2026, 7, 20))
    untouched = make_item(patient, key="c", due=date(2026, 7, 25))
    n2 = other_nurse(team)
    a_given = appointment_book(plan_item=given, starts_at=at("2026-07-10"), nurse=nurse, by=nurse)
    a_dropped = appointment_book(plan_item=dropped, starts_at=at("2026-07-10"), nurse=n2, by=nurse)
    a_untouched = appointment_book(plan_item=untouched, starts_at=at("2026-07-11"), nurse=nurse, by=nurse)
    given.status, dropped.status = ItemStatus.DONE, ItemStatus.CANCELLED
    with django_assert_num_queries(3):  # select, bulk update, bulk history insert
        assert appointments_close_for_items([given, dropped, untouched], now=at("2026-06-02")) == 2
    a_given.refresh_from_db()
    a_dropped.refresh_from_db()
    a_untouched.refresh_from_db()
    assert (a_given.status, a_given.sequence, a_given.cancelled_at) == ("done", 0, None)
    assert (a_dropped.status, a_dropped.sequence, a_dropped.cancelled_at) == ("cancelled", 1, at("2026-06-02"))
    assert a_untouched.status == "booked"
    assert a_dropped.history.first().history_change_reason == "plan item closed"  # type: ignore[attr-defined]
    assert appointments_close_for_items([]) == 0


def test_reopened_items_get_back_only_the_appointments_their_close_closed(patient: Any, nurse: Any, team: Any) -> None:
    """An appointment comes back if the item's close closed it and its slot is still free."""
    back, taken, earlier = make_item(patient, key="a"), make_item(patient, key="b"), make_item(patient, key="c")
    n2 = other_nurse(team)
    a_back = appointment_book(plan_item=back, starts_at=at("2026-07-10"), nurse=nurse, by=nurse)
    a_taken = appointment_book(plan_item=taken, starts_at=at("2026-07-11"), nurse=n2, by=nurse)
    a_earlier = appointment_book(plan_item=earlier, starts_at=at("2026-07-12"), nurse=nurse, by=nurse)
    appointment_cancel(appointment=a_earlier, by=nurse, reason="patient away")  # before the close
    closed = at("2026-06-02")
    back.status = taken.status = earlier.status = ItemStatus.DONE
    assert appointments_close_for_items([back, taken, earlier], now=closed) == 2
    # Meanwhile the second nurse is booked over the slot of the second item's appointment.
    other = make_item(PatientFactory(care_team=team), key="d")
    appointment_book(plan_item=other, starts_at=at("2026-07-11"), nurse=n2, by=nurse)
    reopened = appointments_reopen_for_items(
        {back.pk: closed, taken.pk: closed, earlier.pk: closed}, now=at("2026-06-03")
    )
    assert reopened == 1
    for row in (a_back, a_taken, a_earlier):
        row.refresh_from_db()
    assert (a_back.status, a_back.sequence) == ("booked", 1)
    assert a_taken.status == "done"  # its slot went to another patient: book the item again
    assert a_earlier.status == "cancelled"  # cancelled by staff before the close, not by it
    assert appointments_reopen_for_items({}) == 0
