"""Through the real services: a recorded dose re-plans, and the outbox follows in the same transaction."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from notifications.models import OutboxMessage, OutboxState
from patients import services as booklet

from .conftest import OP, paris

pytestmark = pytest.mark.django_db


def _give(patient: Any, course: Any, nurse: Any, day: str) -> Any:
    return booklet.dose_record(
        patient=patient,
        course=course,
        product="denosumab",
        dose_value=Decimal("60"),
        dose_unit="mg",
        route="SC",
        given_at=paris(day),
        by=nurse,
        given_by=nurse,
        injection_site="abdomen",
        lot_number="LOT-42A",
    )


def _calcium(patient: Any, nurse: Any, day: str) -> None:
    booklet.lab_add(
        patient=patient,
        test="calcium_total",
        value=Decimal("2.35"),
        unit="mmol/L",
        drawn_at=paris(day, 8),
        albumin_g_l=Decimal("40"),
        by=nurse,
    )


def _on_denosumab(team: Any, nurse: Any) -> tuple[Any, Any, Any]:
    """A patient reachable by email, started on 6-monthly denosumab with a first dose on
    2026-01-15 (calcium drawn the week before): (patient, course, dose)."""
    with time_machine.travel(paris("2026-01-15", 11), tick=False):
        patient = booklet.patient_create(
            care_team=team,
            by=nurse,
            first_name="Jeanne",
            last_name="Martin",
            birth_date=date(1958, 4, 12),
            sex="F",
            email="jeanne@example.org",
            consent_email=True,
        )
        _calcium(patient, nurse, "2026-01-08")
        course = booklet.course_start(patient=patient, protocol=OP, start_date=date(2026, 1, 15), by=nurse)
        return patient, course, _give(patient, course, nurse, "2026-01-15")


def test_dose_recorded_plans_reminders_and_a_corrected_dose_moves_them(team: Any, nurse: Any) -> None:
    patient, course, dose = _on_denosumab(team, nurse)
    injection = OutboxMessage.objects.filter(patient=patient, state="pending", plan_item__kind="injection")
    # Next dose due 2026-07-15 (OP-01); its day-of reminder at 09:00 CEST.
    assert injection.get(offset_days=0, plan_item__due=date(2026, 7, 15)).send_at == datetime(
        2026, 7, 15, 7, 0, tzinfo=UTC
    )
    before = set(injection.filter(plan_item__due=date(2026, 7, 15)).values_list("pk", flat=True))
    assert before
    with time_machine.travel(paris("2026-01-21", 9), tick=False):
        booklet.dose_void(dose=dose, reason="Wrong date entered", by=nurse)
        _give(patient, course, nurse, "2026-01-20")
    assert set(OutboxMessage.objects.filter(pk__in=before).values_list("state", flat=True)) == {OutboxState.CANCELLED}
    moved = OutboxMessage.objects.filter(patient=patient, state="pending", plan_item__kind="injection")
    first = moved.order_by("send_at").filter(offset_days=0).first()
    assert first is not None and first.send_at == datetime(2026, 7, 20, 7, 0, tzinfo=UTC)


def test_a_dose_voided_as_a_mistake_gives_its_item_back_its_reminders(team: Any, nurse: Any) -> None:
    """A dose recorded by mistake closes the injection and cancels its reminders; voiding it
    reopens the item as a new version, so the reminders still to come are written again (the
    cancelled rows keep their keys) and calendars see the event un-cancelled (SEQUENCE + 1)."""
    from scheduling.models import PlanItem

    patient, course, _ = _on_denosumab(team, nurse)
    with time_machine.travel(paris("2026-07-10", 11), tick=False):
        _calcium(patient, nurse, "2026-07-09")
        item = PlanItem.objects.get(patient=patient, key=f"injection:{course.pk}:2")
        pending = {
            (m.offset_days, m.send_at) for m in OutboxMessage.objects.filter(plan_item=item, state=OutboxState.PENDING)
        }
        assert pending and item.version == 1
        mistake = _give(patient, course, nurse, "2026-07-10")
        item.refresh_from_db()
        assert item.status == "done"
        assert not OutboxMessage.objects.filter(plan_item=item, state=OutboxState.PENDING).exists()
        booklet.dose_void(dose=mistake, reason="entered on the wrong patient", by=nurse)
        item.refresh_from_db()
        assert item.status == "window_open" and item.version == 2
        again = OutboxMessage.objects.filter(plan_item=item, state=OutboxState.PENDING)
        # The reminders still to come (D-3 and D0), not those whose day has passed.
        assert {(m.offset_days, m.send_at) for m in again} == {p for p in pending if p[1] >= paris("2026-07-10", 0)}
        assert {m.offset_days for m in again} == {-3, 0}
        assert {m.item_version for m in again} == {2}


def test_a_voided_dose_reopens_the_escalation_it_resolved_with_new_messages(team: Any, nurse: Any) -> None:
    """An overdue injection on its ladder (L1: patient and nurse told) is closed by a dose recorded
    by mistake, which resolves L1 and cancels its messages. Voiding the dose reopens the item and,
    with it, L1: open again, unacknowledged, audited, and its messages written again under new
    keys. A level resolved by staff themselves is left as they left it."""
    from scheduling import services as planning
    from scheduling.models import Escalation, PlanItem

    patient, course, _ = _on_denosumab(team, nurse)
    with time_machine.travel(paris("2026-07-20", 11), tick=False):
        _calcium(patient, nurse, "2026-07-19")  # also re-plans: the injection is overdue, L1 opens
        item = PlanItem.objects.get(patient=patient, key=f"injection:{course.pk}:2")
        l1 = Escalation.objects.get(plan_item=item, level="L1")
        first = set(OutboxMessage.objects.filter(escalation=l1).values_list("key", flat=True))
        assert l1.resolved_at is None and first
        assert OutboxMessage.objects.filter(escalation=l1, recipient_user=nurse, state=OutboxState.PENDING).exists()
        mistake = _give(patient, course, nurse, "2026-07-20")
        l1.refresh_from_db()
        assert (l1.resolution, l1.reopened) == ("given", 0)
        assert not OutboxMessage.objects.filter(escalation=l1, state=OutboxState.PENDING).exists()
    with time_machine.travel(paris("2026-07-20", 15), tick=False):
        booklet.dose_void(dose=mistake, reason="entered on the wrong patient", by=nurse)
        l1.refresh_from_db()
        assert (l1.resolved_at, l1.resolution, l1.acknowledged_at, l1.reopened) == (None, "", None, 1)
        assert l1.opened_at == paris("2026-07-20", 15)
        assert l1.history.first().history_change_reason == "reopened with its item"
        again = OutboxMessage.objects.filter(escalation=l1, state=OutboxState.PENDING)
        assert {m.recipient_user_id for m in again} == {None, nurse.pk}  # the patient and the nurse
        assert not first & {m.key for m in again}
        assert all(m.send_at >= paris("2026-07-20", 15) for m in again)
        # Staff resolve it themselves; a later close and reopen leaves their resolution alone.
        planning.escalation_resolve(escalation=l1, by=nurse, resolution="phoned the patient")
        again_mistake = _give(patient, course, nurse, "2026-07-20")
        booklet.dose_void(dose=again_mistake, reason="entered twice", by=nurse)
        l1.refresh_from_db()
        assert (l1.resolution, l1.reopened) == ("phoned the patient", 1)
