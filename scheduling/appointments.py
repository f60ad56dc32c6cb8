"""Writes of a nurse's calendar: book, move and cancel appointments for plan items.

Every change that moves an appointment's time or cancels it bumps ``sequence`` so calendar
clients (iCal SEQUENCE) replace their copy. A booking is checked against the item's due
window, read as local dates in the patient's time zone (TIME-01); outside it, the nurse must
say why. Rows are locked (plan item, then nurse) so two concurrent bookings cannot both pass
the one-appointment-per-item and no-overlap checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_update_with_history

from backend.errors import CarnetError, Conflict
from patients.models import Patient, StaffMembership, User
from scheduling.models import Appointment, ItemStatus, PlanItem

DEFAULT_DURATION = timedelta(minutes=30)
MAX_DURATION = timedelta(hours=12)


class AppointmentForbidden(CarnetError):
    status = 403
    code = "forbidden"


def item_window(item: PlanItem) -> tuple[date, date]:
    """The local dates an item may be done on; an item without a window is due on its day."""
    return (item.window_start or item.due, item.window_end or item.due)


def _check_times(starts_at: datetime, ends_at: datetime) -> None:
    if timezone.is_naive(starts_at):
        raise CarnetError("Give the start with its time zone.", field="starts_at", code="naive_datetime")
    if timezone.is_naive(ends_at):
        raise CarnetError("Give the end with its time zone.", field="ends_at", code="naive_datetime")
    if ends_at <= starts_at:
        raise CarnetError("The appointment must end after it starts.", field="ends_at")
    if ends_at - starts_at > MAX_DURATION:
        raise CarnetError("An appointment lasts at most 12 hours.", field="ends_at")


def _check_window(item: PlanItem, patient: Patient, starts_at: datetime, reason: str) -> str:
    """Return the reason to store: empty inside the window, required outside it."""
    first, last = item_window(item)
    day = patient.local_date(starts_at)
    if first <= day <= last:
        return ""
    if not reason.strip():
        where = "before" if day < first else "after"
        span = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
        raise CarnetError(
            f"{day.isoformat()} is {where} the due window ({span}, {patient.timezone}); "
            "give a reason to book outside it.",
            field="starts_at",
            code="out_of_window",
        )
    return reason.strip()


def _check_staff(user: User, patient: Patient, *, field: str, who: str) -> None:
    ok = (
        user.is_active
        and user.is_care_staff
        and StaffMembership.objects.filter(user=user, care_team_id=patient.care_team_id).exists()
    )
    if not ok:
        raise AppointmentForbidden(f"The {who} is not on this patient's care team.", field=field)


def _check_nurse_free(nurse: User, starts_at: datetime, ends_at: datetime, *, exclude_pk: int | None) -> None:
    # Lock the nurse's row: concurrent bookings for the same nurse run one after the other.
    User.objects.select_for_update().filter(pk=nurse.pk).first()
    clash = Appointment.objects.filter(
        nurse=nurse, status=Appointment.Status.BOOKED, starts_at__lt=ends_at, ends_at__gt=starts_at
    )
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    other = clash.select_related("care_team").order_by("starts_at").first()
    if other is not None:
        local = timezone.localtime(other.starts_at, ZoneInfo(other.care_team.timezone))
        raise Conflict(
            f"The nurse already has an appointment at {local:%Y-%m-%d %H:%M}.", field="starts_at", code="conflict"
        )


def _save(appointment: Appointment, *, by: User, reason: str = "", **kwargs: Any) -> None:
    try:
        appointment.full_clean()
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise CarnetError(messages[0], field=None if field == "__all__" else field) from exc
    appointment._history_user = by  # type: ignore[attr-defined]  # read by simple-history
    if reason:
        appointment._change_reason = reason  # type: ignore[attr-defined]  # read by simple-history
    appointment.save(**kwargs)


@transaction.atomic
def appointment_book(
    *,
    plan_item: PlanItem,
    starts_at: datetime,
    ends_at: datetime | None = None,
    nurse: User,
    by: User,
    out_of_window_reason: str = "",
) -> Appointment:
    """Book ``nurse`` for ``plan_item``; one booked appointment per item, no overlap per nurse."""
    ends_at = ends_at or starts_at + DEFAULT_DURATION
    _check_times(starts_at, ends_at)
    item = PlanItem.objects.select_for_update(of=("self",)).select_related("patient").get(pk=plan_item.pk)
    patient = item.patient
    if not item.is_open:
        raise CarnetError(
            f"This item is {item.get_status_display().lower()}; it cannot be booked.",
            field="plan_item",
            code="closed",
        )
    _check_staff(by, patient, field="by", who="person booking")
    _check_staff(nurse, patient, field="nurse", who="nurse")
    reason = _check_window(item, patient, starts_at, out_of_window_reason)
    if Appointment.objects.filter(plan_item=item, status=Appointment.Status.BOOKED).exists():
        raise Conflict(
            "This item already has a booked appointment; move it instead.", field="plan_item", code="already_booked"
        )
    _check_nurse_free(nurse, starts_at, ends_at, exclude_pk=None)
    appointment = Appointment(
        care_team_id=patient.care_team_id,
        patient=patient,
        plan_item=item,
        nurse=nurse,
        starts_at=starts_at,
        ends_at=ends_at,
        out_of_window_reason=reason,
        status=Appointment.Status.BOOKED,
        sequence=0,
    )
    _save(appointment, by=by)
    return appointment


@transaction.atomic
def appointment_move(
    *,
    appointment: Appointment,
    starts_at: datetime,
    ends_at: datetime | None = None,
    by: User,
    out_of_window_reason: str = "",
) -> Appointment:
    """Move a booked appointment (same UID in calendars, higher SEQUENCE); keeps its length by default."""
    locked = (
        Appointment.objects.select_for_update(of=("self",))
        .select_related("patient", "plan_item")
        .get(pk=appointment.pk)
    )
    if locked.status != Appointment.Status.BOOKED:
        raise CarnetError(
            f"This appointment is {locked.status}; it cannot be moved.", field="appointment", code="not_booked"
        )
    ends_at = ends_at or starts_at + (locked.ends_at - locked.starts_at)
    _check_times(starts_at, ends_at)
    _check_staff(by, locked.patient, field="by", who="person moving it")
    if (starts_at, ends_at) == (locked.starts_at, locked.ends_at):
        return locked
    reason = out_of_window_reason
    if locked.plan_item is not None:
        reason = _check_window(locked.plan_item, locked.patient, starts_at, out_of_window_reason)
    if locked.nurse is not None:
        _check_nurse_free(locked.nurse, starts_at, ends_at, exclude_pk=locked.pk)
    locked.starts_at = starts_at
    locked.ends_at = ends_at
    locked.out_of_window_reason = reason
    locked.sequence += 1
    _save(locked, by=by, update_fields=["starts_at", "ends_at", "out_of_window_reason", "sequence", "updated_at"])
    return locked


@transaction.atomic
def appointment_cancel(*, appointment: Appointment, by: User, reason: str) -> Appointment:
    """Cancel with a reason (kept in the history); calendars show it CANCELLED for 30 days."""
    if not reason.strip():
        raise CarnetError("Say why the appointment is cancelled.", field="reason", code="required")
    locked = Appointment.objects.select_for_update(of=("self",)).select_related("patient").get(pk=appointment.pk)
    _check_staff(by, locked.patient, field="by", who="person cancelling it")
    if locked.status == Appointment.Status.CANCELLED:
        return locked
    if locked.status != Appointment.Status.BOOKED:
        raise CarnetError("This appointment is done; it cannot be cancelled.", field="appointment", code="done")
    locked.status = Appointment.Status.CANCELLED
    locked.cancelled_at = timezone.now()
    locked.sequence += 1
    _save(
        locked, by=by, reason=reason.strip()[:100], update_fields=["status", "cancelled_at", "sequence", "updated_at"]
    )
    return locked


def appointments_close_for_items(
    items: Iterable[PlanItem], *, now: datetime | None = None, by: User | None = None
) -> int:
    """Follow closed plan items: a done item's booked appointment is done, otherwise cancelled.

    Call it inside the transaction that closes the items (``plans_sync_batch``, after its
    ``bulk_update``). Two queries whatever the number of items; history rows are written.
    """
    status_by_item = {
        item.pk: item.status
        for item in items
        if item.pk is not None and item.status in (ItemStatus.DONE, ItemStatus.CANCELLED, ItemStatus.MISSED)
    }
    if not status_by_item:
        return 0
    moment = now or timezone.now()
    rows = list(
        Appointment.objects.select_for_update().filter(
            plan_item_id__in=list(status_by_item), status=Appointment.Status.BOOKED
        )
    )
    for row in rows:
        assert row.plan_item_id is not None  # filtered on plan_item_id above
        if status_by_item[row.plan_item_id] == ItemStatus.DONE:
            row.status = Appointment.Status.DONE
        else:
            row.status = Appointment.Status.CANCELLED
            row.cancelled_at = moment
            row.sequence += 1
        row.updated_at = moment
    _status_write(rows, reason="plan item closed", by=by)
    return len(rows)


def appointments_reopen_for_items(closed_at: dict[int, datetime], *, now: datetime | None = None) -> int:
    """Undo ``appointments_close_for_items`` for items planned again (the dose that closed them
    was voided): an appointment it closed with the item (done or cancelled at the item's
    ``closed_at``) is booked again, with a higher SEQUENCE for calendars.

    ``closed_at``: item pk -> the instant the item had been closed. An appointment stays as it is
    if its item has another booked one by now, or if its nurse was booked over its slot
    meanwhile; the item is open on the worklist to book again.
    """
    if not closed_at:
        return 0
    moment = now or timezone.now()
    # One read, locked: the item's appointments that the close may have closed, and any booked since.
    found = list(
        Appointment.objects.select_for_update(of=("self",))
        .select_related("nurse")  # read with the row: the slot check needs each one's nurse
        .filter(plan_item_id__in=list(closed_at))
        .exclude(plan_item_id=None)
        .order_by("pk")
    )
    booked = {row.plan_item_id for row in found if row.status == Appointment.Status.BOOKED}
    closed_with_item = [
        row
        for row in found
        if row.status in (Appointment.Status.DONE, Appointment.Status.CANCELLED)
        and row.updated_at == closed_at[row.plan_item_id]  # type: ignore[index]  # excluded None above
        and row.cancelled_at in (None, closed_at[row.plan_item_id])  # type: ignore[index]
    ]
    rows = []
    for row in closed_with_item:
        if row.plan_item_id in booked:
            continue
        if row.nurse is not None:
            try:
                _check_nurse_free(row.nurse, row.starts_at, row.ends_at, exclude_pk=row.pk)
            except Conflict:
                continue
        booked.add(row.plan_item_id)
        row.status, row.cancelled_at, row.updated_at = Appointment.Status.BOOKED, None, moment
        row.sequence += 1
        rows.append(row)
    _status_write(rows, reason="plan item reopened")
    return len(rows)


def _status_write(rows: list[Appointment], *, reason: str, by: User | None = None) -> None:
    """Store the status of appointments that follow their plan item, with their history rows."""
    if rows:
        bulk_update_with_history(
            rows,
            Appointment,
            ["status", "cancelled_at", "sequence", "updated_at"],
            batch_size=500,
            default_user=by,
            default_change_reason=reason,
        )
