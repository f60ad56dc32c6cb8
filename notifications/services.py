"""Writes of the outbox: reminders and escalation messages kept in step with the plan.

``outbox_sync`` is called by ``scheduling.services.plans_sync_batch`` at the end of every
re-plan, inside the same transaction. It computes, for the patients of the batch, every
message the plan and the open escalations call for, keyed by a stable idempotency key, and
diffs that against the stored pending rows: unchanged facts create and cancel nothing; a
moved item (new ``version``) or a done or cancelled one cancels its pending rows and
creates the right new ones. A batch costs a fixed number of queries.

Delivery (the sweep, the transports, retries) lives in ``notifications.delivery``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from backend.bulk import rows_insert_sql, rows_update
from backend.errors import CarnetError
from notifications import policy
from notifications.models import (
    PUSH_CHANNELS,
    Channel,
    Device,
    MessageKind,
    NotificationPreference,
    OutboxMessage,
    OutboxState,
    SuppressedAddress,
)
from patients.locks import patients_lock
from patients.models import Patient, Role, StaffMembership, User
from scheduling.models import OPEN_STATUSES, Escalation, PlanItem

if TYPE_CHECKING:
    from scheduling.services import SyncResult

log = logging.getLogger(__name__)

ALL_CHANNELS = tuple(c.value for c in Channel)
# Escalation audiences (scheduling.rules.protocols.RECIPIENTS) to care-team roles. There is no
# specialist role yet: a specialist alert goes to the team's physicians.
AUDIENCE_ROLES: dict[str, tuple[str, ...]] = {
    "nurse": (Role.NURSE,),
    "physician": (Role.PHYSICIAN,),
    "specialist": (Role.PHYSICIAN,),
}


def notify_time() -> time:
    """TIME-04 default: the policy's notify hour (09:00 unless CARNET_RULES says otherwise)."""
    from scheduling.selectors import rules_config

    return time(rules_config().notify_hour, 0)


@dataclass(frozen=True, slots=True)
class Reach:
    """How to reach one person: time zone, time of day, quiet hours, language, channels."""

    tz: ZoneInfo
    at: time
    quiet_start: time | None
    quiet_end: time | None
    language: str
    channels: tuple[str, ...]

    def send_at(self, day: date, *, not_before: datetime | None = None) -> datetime:
        return policy.local_send_at(
            day, tz=self.tz, at=self.at, quiet_start=self.quiet_start, quiet_end=self.quiet_end, not_before=not_before
        )


def _reach(pref: NotificationPreference | None, *, tz: str, language: str) -> Reach:
    if pref is None:
        return Reach(ZoneInfo(tz), notify_time(), None, None, language, ALL_CHANNELS)
    return Reach(
        ZoneInfo(tz),
        pref.time_of_day,
        pref.quiet_start,
        pref.quiet_end,
        pref.language or language,
        tuple(pref.channels) if pref.channels else ALL_CHANNELS,
    )


@dataclass(frozen=True, slots=True)
class Destination:
    """One channel of one recipient: the email address or the push device, with its key part."""

    channel: str
    ref: str  # part of the idempotency key: "patient:12", "user:3", "device:7"
    device_id: int | None = None


def _patient_destinations(
    patient: Patient, reach: Reach, devices: list[Device], suppressed: set[str]
) -> list[Destination]:
    out: list[Destination] = []
    if (
        Channel.EMAIL in reach.channels
        and patient.consent_email
        and patient.email
        and patient.email.lower() not in suppressed
    ):
        out.append(Destination(Channel.EMAIL, f"patient:{patient.pk}"))
    if patient.consent_push:
        for device in devices:
            if device.active and device.channel in reach.channels:
                out.append(Destination(device.channel, f"device:{device.pk}", device.pk))
    return out


def _staff_destinations(user: User, suppressed: set[str]) -> list[Destination]:
    """Staff are reached by email (and on their worklist, which reads the Escalation rows)."""
    if not user.is_active or not user.email or user.email.lower() in suppressed:
        return []
    return [Destination(Channel.EMAIL, f"user:{user.pk}")]


class _OpenItem(NamedTuple):
    """What the outbox reads of an open plan item: a plain row, not a model instance (a changed
    plan's ~30 open items each built as an instance cost more than the rest of the sync)."""

    pk: int
    patient_id: int
    key: str
    kind: str
    protocol: str
    due: date
    version: int


@dataclass
class _Context:
    """What one batch of patients needs, read in a fixed number of queries."""

    patients: dict[int, Patient]
    items: dict[int, list[_OpenItem]]
    escalations: list[Escalation]
    prefs: dict[int, NotificationPreference]
    user_prefs: dict[int, NotificationPreference]
    devices: dict[int, list[Device]]
    staff: dict[tuple[int, str], list[User]]  # (care team, role) -> users
    team_tz: dict[int, str]
    suppressed: set[str]


def _load(patient_ids: list[int], item_ids: Collection[int] | None = None) -> _Context:
    """What ``_desired`` reads for ``patient_ids``: of all their open items and open escalations,
    or only of the items ``item_ids`` and their escalations (``outbox_sync(items=…)``)."""
    patients = {
        p.pk: p
        for p in Patient.objects.filter(pk__in=patient_ids)
        .select_related("care_team")
        .only(
            "pk",
            "timezone",
            "language",
            "email",
            "consent_email",
            "consent_push",
            "first_name",
            "care_team__id",
            "care_team__timezone",
        )
    }
    items: dict[int, list[_OpenItem]] = defaultdict(list)
    open_items = PlanItem.objects.filter(patient_id__in=patient_ids, status__in=OPEN_STATUSES)
    open_escalations = Escalation.objects.filter(patient_id__in=patient_ids, resolved_at__isnull=True)
    if item_ids is not None:
        open_items = open_items.filter(pk__in=list(item_ids))
        open_escalations = open_escalations.filter(plan_item_id__in=list(item_ids))
    for row in open_items.values_list(*_OpenItem._fields):
        item = _OpenItem._make(row)
        items[item.patient_id].append(item)
    escalations = list(
        open_escalations.select_related("plan_item").only(
            "pk",
            "patient_id",
            "level",
            "severity",
            "notify",
            "opened_at",
            "opened_on",
            "acknowledged_at",
            "reopened",
            "plan_item__id",
            "plan_item__status",
            "plan_item__key",
        )
    )
    prefs = {p.patient_id: p for p in NotificationPreference.objects.filter(patient_id__in=patient_ids) if p.patient_id}
    devices: dict[int, list[Device]] = defaultdict(list)
    for device in Device.objects.filter(patient_id__in=patient_ids, active=True).order_by("pk"):
        assert device.patient_id is not None
        devices[device.patient_id].append(device)
    team_ids = {p.care_team_id for p in patients.values()}
    staff: dict[tuple[int, str], list[User]] = defaultdict(list)
    user_ids: set[int] = set()
    if escalations:
        for membership in (
            StaffMembership.objects.filter(care_team_id__in=team_ids, role__in=[Role.NURSE, Role.PHYSICIAN])
            .select_related("user")
            .order_by("pk")
        ):
            staff[(membership.care_team_id, membership.role)].append(membership.user)
            user_ids.add(membership.user_id)
    user_prefs = (
        {p.user_id: p for p in NotificationPreference.objects.filter(user_id__in=user_ids) if p.user_id}
        if user_ids
        else {}
    )
    emails = [p.email.lower() for p in patients.values() if p.email] + [
        u.email.lower() for users in staff.values() for u in users
    ]
    suppressed = (
        set(SuppressedAddress.objects.filter(email__in=emails).values_list("email", flat=True)) if emails else set()
    )
    return _Context(
        patients=patients,
        items=items,
        escalations=escalations,
        prefs=prefs,
        user_prefs=user_prefs,
        devices=devices,
        staff=staff,
        team_tz={p.care_team_id: p.care_team.timezone for p in patients.values()},
        suppressed={s.lower() for s in suppressed},
    )


def _protocol_offsets() -> dict[str, tuple[int, ...]]:
    from scheduling.rules.protocols import protocols
    from scheduling.selectors import rules_config

    return {pid: p.notification_offsets for pid, p in protocols(rules_config()).items()}


@dataclass(frozen=True, slots=True)
class _Wanted:
    """A message the plan calls for; the model instance is built only if the row must be created.

    Re-planning with unchanged facts wants thousands of rows that already exist: building an
    ``OutboxMessage`` for each was most of the cost of a re-plan (bench/bench_replan.py).
    """

    send_at: datetime
    language: str
    fields: dict[str, Any]

    def build(self) -> OutboxMessage:
        return OutboxMessage(**self.fields)


def _row(
    *,
    key: str,
    kind: str,
    dest: Destination,
    send_at: datetime,
    language: str,
    patient_id: int | None,
    recipient_user_id: int | None = None,
    plan_item: _OpenItem | None = None,
    offset: int | None = None,
    escalation: Escalation | None = None,
    repeat: int = 0,
    context: dict[str, Any] | None = None,
) -> _Wanted:
    return _Wanted(
        send_at=send_at,
        language=language,
        fields={
            "key": key,
            "kind": kind,
            "channel": dest.channel,
            "state": OutboxState.PENDING,
            "patient_id": patient_id,
            "recipient_user_id": recipient_user_id,
            "device_id": dest.device_id,
            "plan_item_id": plan_item.pk if plan_item is not None else None,
            "item_version": plan_item.version if plan_item is not None else None,
            "offset_days": offset,
            "escalation": escalation,
            "repeat": repeat,
            "language": language,
            "context": context or {},
            "send_at": send_at,
            "next_attempt_at": send_at,
        },
    )


def _desired(ctx: _Context, now: datetime) -> tuple[dict[str, _Wanted], set[str]]:
    """Every message the plan calls for, by key, and the keys that may still be created.

    Past offsets stay in the desired set (so a pending row for them is not cancelled) but are
    not created: a "14 days before" reminder is pointless 9 days before.
    """
    offsets_by_protocol = _protocol_offsets()
    desired: dict[str, _Wanted] = {}
    creatable: set[str] = set()
    for pid, patient in ctx.patients.items():
        reach = _reach(ctx.prefs.get(pid), tz=patient.timezone, language=patient.language)
        dests = _patient_destinations(patient, reach, ctx.devices.get(pid, []), ctx.suppressed)
        if not dests:
            continue
        today = timezone.localtime(now, reach.tz).date()
        for item in ctx.items.get(pid, []):
            offsets = policy.offsets_for(item.kind, offsets_by_protocol.get(item.protocol))
            for offset in offsets:
                day = item.due + timedelta(days=offset)  # TIME-03: calendar days on a local date
                send_at = reach.send_at(day)
                for dest in dests:
                    key = policy.idempotency_key(
                        "reminder", pid, item.key, item.version, offset, dest.channel, dest.ref
                    )
                    desired[key] = _row(
                        key=key,
                        kind=MessageKind.REMINDER,
                        dest=dest,
                        send_at=send_at,
                        language=reach.language,
                        patient_id=pid,
                        plan_item=item,
                        offset=offset,
                        context={"item_kind": item.kind},
                    )
                    if day >= today:
                        creatable.add(key)
    latest_level: dict[int, str] = {}
    for esc in ctx.escalations:
        latest_level[esc.plan_item_id] = max(latest_level.get(esc.plan_item_id, ""), esc.level)
    for esc in ctx.escalations:
        if esc.plan_item.status not in OPEN_STATUSES:
            continue
        subject = ctx.patients.get(esc.patient_id)
        if subject is None:
            continue
        for audience in esc.notify:
            _escalation_rows(ctx, esc, subject, audience, latest_level, now, desired, creatable)
    return desired, creatable


def _escalation_rows(
    ctx: _Context,
    esc: Escalation,
    patient: Patient,
    audience: str,
    latest_level: dict[int, str],
    now: datetime,
    desired: dict[str, _Wanted],
    creatable: set[str],
) -> None:
    context = {"level": esc.level, "severity": esc.severity}
    if audience == "patient":
        # The patient hears once per level, at their time of day, never before the escalation opened.
        reach = _reach(ctx.prefs.get(patient.pk), tz=patient.timezone, language=patient.language)
        send_at = reach.send_at(esc.opened_on, not_before=esc.opened_at)
        for dest in _patient_destinations(patient, reach, ctx.devices.get(patient.pk, []), ctx.suppressed):
            key = _escalation_key(esc, 0, dest)
            desired[key] = _row(
                key=key,
                kind=MessageKind.ESCALATION,
                dest=dest,
                send_at=send_at,
                language=reach.language,
                patient_id=patient.pk,
                escalation=esc,
                context=context,
            )
            creatable.add(key)
        return
    if esc.acknowledged_at is not None:
        return  # acknowledging stops the staff messages of this level
    rule = policy.ESCALATION_POLICY.get(esc.severity, policy.EscalationPolicy())
    # Repeats only for the highest open level of an item; lower levels were sent once.
    repeats = rule.repeats if latest_level.get(esc.plan_item_id) == esc.level else 0
    seen: set[int] = set()
    for role in AUDIENCE_ROLES.get(audience, ()):
        for user in ctx.staff.get((patient.care_team_id, role), []):
            if user.pk in seen:
                continue
            seen.add(user.pk)
            reach = _reach(ctx.user_prefs.get(user.pk), tz=ctx.team_tz[patient.care_team_id], language=user.language)
            today = timezone.localtime(now, reach.tz).date()
            for dest in _staff_destinations(user, ctx.suppressed):
                for repeat in range(repeats + 1):
                    day = esc.opened_on + timedelta(days=repeat * rule.repeat_days)
                    send_at = reach.send_at(day, not_before=esc.opened_at)
                    key = _escalation_key(esc, repeat, dest)
                    desired[key] = _row(
                        key=key,
                        kind=MessageKind.ESCALATION,
                        dest=dest,
                        send_at=send_at,
                        language=reach.language,
                        patient_id=patient.pk,
                        recipient_user_id=user.pk,
                        escalation=esc,
                        repeat=repeat,
                        context={**context, "audience": audience},
                    )
                    if repeat == 0 or day >= today:
                        creatable.add(key)


def _escalation_key(esc: Escalation, repeat: int, dest: Destination) -> str:
    """An escalation message's key; a level reopened with its item (``Escalation.reopened``) has
    new ones, since a key is written once and the close cancelled the earlier messages."""
    if esc.reopened:
        return policy.idempotency_key("escalation", esc.pk, repeat, dest.channel, dest.ref, "reopened", esc.reopened)
    return policy.idempotency_key("escalation", esc.pk, repeat, dest.channel, dest.ref)


@dataclass
class OutboxSyncResult:
    created: int = 0
    cancelled: int = 0
    retimed: int = 0


def outbox_sync(
    *,
    patients: Sequence[Patient],
    result: SyncResult | None = None,
    now: datetime | None = None,
    items: Collection[int] | None = None,
) -> OutboxSyncResult:
    """Bring the pending outbox rows of ``patients`` in step with their plan and escalations.

    Runs inside the caller's transaction (``plans_sync_batch``). ``result`` is informative only:
    the diff is against the stored plan, so a missed call is repaired by the next one.

    ``items`` (plan item ids of these patients) limits the sync to the messages of those items
    and of their escalations, for a caller that knows every other message of the patients is in
    step: the bulk passes, which pass the items they created, moved, closed, reopened or retyped
    and those whose ladder opened or reopened a level (``SyncResult.outbox_item_ids``). A
    message depends on its item (key, version, kind, protocol, due date) or escalation (and the
    item's other open levels, for repeats), and on the patient's preferences, devices, consent
    and contact, whose changes re-sync everything of the patient (``_resync``).
    """
    moment = now or timezone.now()
    ids = [p.pk for p in patients]
    out = OutboxSyncResult()
    if not ids or (items is not None and not items):
        return out
    with transaction.atomic():
        patients_lock(ids)  # not while a re-plan of theirs is writing (already held inside one)
        ctx = _load(ids, items)
        desired, creatable = _desired(ctx, moment)
        of_patients = OutboxMessage.objects.filter(patient_id__in=ids)
        escalation_ids = [e.pk for e in ctx.escalations]
        if items is not None:
            # The rows of these items and of all their escalations, resolved ones too (a closed
            # item's pending escalation messages are cancelled here).
            escalation_ids = list(Escalation.objects.filter(plan_item_id__in=list(items)).values_list("pk", flat=True))
            of_patients = of_patients.filter(Q(plan_item_id__in=list(items)) | Q(escalation_id__in=escalation_ids))
        pending = {
            row.key: row
            for row in of_patients.filter(
                state=OutboxState.PENDING,
                kind__in=[MessageKind.REMINDER, MessageKind.ESCALATION],
            ).values_list("pk", "key", "send_at", "attempts", "language", named=True)
        }
        # Rows already written, whatever their state. A creatable reminder is for today or later, so
        # its row (if any) is due from yesterday on; an escalation row belongs to an open escalation.
        # One query, however long the patients' history; the unique key backs it up.
        existing: set[str] = set(pending)
        existing.update(
            of_patients.filter(
                Q(send_at__gte=moment - timedelta(days=2)) | Q(escalation_id__in=escalation_ids)
            ).values_list("key", flat=True)
        )
        to_create = [desired[k].build() for k in creatable if k not in existing]
        if to_create:
            out.created = create_rows(to_create, reason="planned")
        stale = [row for key, row in pending.items() if key not in desired]
        if stale:
            _close(stale, state=OutboxState.CANCELLED, reason="replanned", now=moment)
            out.cancelled = len(stale)
        retime = []
        for key, row in pending.items():
            want = desired.get(key)
            if want is None or row.attempts:
                continue
            if row.send_at != want.send_at or row.language != want.language:
                retime.append(
                    OutboxMessage(
                        pk=row.pk,
                        send_at=want.send_at,
                        next_attempt_at=want.send_at,
                        language=want.language,
                        updated_at=moment,
                    )
                )
        if retime:
            rows_update(retime, ["send_at", "next_attempt_at", "language", "updated_at"])
            out.retimed = len(retime)
    if out.created or out.cancelled or out.retimed:
        log.info(
            "outbox_sync: %s patients, %s created, %s cancelled, %s retimed",
            len(ids),
            out.created,
            out.cancelled,
            out.retimed,
        )
    return out


def create_rows(rows: list[OutboxMessage], *, reason: str) -> int:
    """Insert rows, skipping those whose patient already has their key (a concurrent re-plan),
    and audit them.

    On PostgreSQL one statement per 500 rows inserts them and writes the audit entry of each row
    it inserted from what the insert returned (``WITH done AS (INSERT … ON CONFLICT DO NOTHING
    RETURNING …) INSERT INTO <history> SELECT … FROM done``, as the delivery
    outcomes do): ``bulk_create``, the re-read by key and ``bulk_history_create`` cost ~0.55 ms of
    Python a row, for the next day's new reminders at a million patients. The same values and
    entries (tested against this ORM path, which other databases take).
    """
    if not rows:
        return 0
    if connection.vendor == "postgresql" and getattr(settings, "SIMPLE_HISTORY_ENABLED", True):
        return _create_rows_audited(rows, reason=reason)
    return _create_rows_orm(rows, reason=reason)


def _create_rows_orm(rows: list[OutboxMessage], *, reason: str) -> int:
    """``create_rows`` through the ORM and django-simple-history."""
    existing = {row.pk for row in _rows_by_key(rows)}
    OutboxMessage.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    # Only the rows this call inserted are audited and counted, as on PostgreSQL.
    fresh = [row for row in _rows_by_key(rows) if row.pk not in existing]
    OutboxMessage.history.bulk_history_create(fresh, batch_size=500, default_change_reason=reason)
    return len(fresh)


def _rows_by_key(rows: list[OutboxMessage]) -> list[OutboxMessage]:
    """The stored rows with the patients and keys of ``rows``, read as the unique constraints
    index them (by patient and key; the key alone is indexed only for rows without a patient):
    one query per 400 rows."""
    wanted = {(row.patient_id, row.key) for row in rows}
    found: list[OutboxMessage] = []
    for start in range(0, len(rows), 400):
        chunk = rows[start : start + 400]
        patient_ids = {row.patient_id for row in chunk if row.patient_id is not None}
        of_patients = Q(patient_id__in=patient_ids)
        if any(row.patient_id is None for row in chunk):
            of_patients |= Q(patient__isnull=True)
        keys = {row.key for row in chunk}
        stored = OutboxMessage.objects.filter(of_patients, key__in=keys)
        found.extend(r for r in stored if (r.patient_id, r.key) in wanted)
    return list({r.pk: r for r in found}.values())


def _create_rows_audited(rows: list[OutboxMessage], *, reason: str) -> int:
    """``create_rows`` on PostgreSQL: the rows and their audit entries, one statement a chunk."""
    # The delivery outcomes' audit statement (lazy: delivery imports this module).
    from notifications.delivery import audit_params, with_audit_sql

    written = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 500):
            # No conflict target: a patient's row conflicts on (patient_id, key), a staff row
            # without a patient on its key alone (a partial index), and both are skipped.
            insert, params = rows_insert_sql(
                rows[start : start + 500], connection=connection, suffix="ON CONFLICT DO NOTHING"
            )
            params += audit_params(reason, "+")
            cursor.execute(with_audit_sql(insert), params)
            written += cursor.rowcount
    return written


def _close(rows: Iterable[Any], *, state: str, reason: str, now: datetime) -> int:
    """Cancel (or kill) pending rows (anything with a ``pk``), audited; claimed rows are left alone.

    On PostgreSQL one statement per 5,000 rows changes the pending ones and writes the audit entry
    of each row it changed from what the UPDATE returned (the delivery outcomes' statement, as
    ``create_rows`` does); elsewhere an UPDATE, a re-read and ``bulk_history_create``.
    """
    pks = [r.pk for r in rows]
    if not pks:
        return 0
    if connection.vendor == "postgresql" and getattr(settings, "SIMPLE_HISTORY_ENABLED", True):
        return _close_audited(pks, state=state, reason=reason, now=now)
    return _close_orm(pks, state=state, reason=reason, now=now)


def _close_audited(pks: list[int], *, state: str, reason: str, now: datetime) -> int:
    """``_close`` on PostgreSQL: the pending rows of ``pks`` changed and audited, one statement a chunk."""
    from notifications.delivery import audit_params, outbox_columns, with_audit_sql  # lazy: delivery imports this

    meta = OutboxMessage._meta
    quote = connection.ops.quote_name
    fields = outbox_columns()
    column = {name: quote(str(fields[name].column)) for name in ("id", "state", "closed_reason", "updated_at")}
    update = (
        f"UPDATE {quote(meta.db_table)} SET {column['state']} = %s, {column['closed_reason']} = %s, "  # noqa: S608
        f"{column['updated_at']} = %s WHERE {column['id']} = ANY(%s::{meta.pk.db_type(connection)}[]) "
        f"AND {column['state']} = %s"
    )
    updated_at = fields["updated_at"].get_db_prep_save(now, connection)
    changed = 0
    with connection.cursor() as cursor:
        for start in range(0, len(pks), 5000):
            params = [state, reason, updated_at, pks[start : start + 5000], OutboxState.PENDING.value]
            params += audit_params(reason, "~")
            cursor.execute(with_audit_sql(update), params)
            changed += cursor.rowcount
    return changed


def _close_orm(pks: list[int], *, state: str, reason: str, now: datetime) -> int:
    """``_close`` through the ORM and django-simple-history."""
    changed = OutboxMessage.objects.filter(pk__in=pks, state=OutboxState.PENDING).update(
        state=state, closed_reason=reason, updated_at=now
    )
    full = list(OutboxMessage.objects.filter(pk__in=pks, state=state, closed_reason=reason))
    OutboxMessage.history.bulk_history_create(full, update=True, default_change_reason=reason)
    return changed


# --- preferences and devices --------------------------------------------------------------------


def _resync(patient: Patient | None) -> None:
    if patient is not None:
        outbox_sync(patients=[patient])


@transaction.atomic
def preference_set(
    *,
    patient: Patient | None = None,
    user: User | None = None,
    channels: list[str] | None = None,
    time_of_day: time | None = None,
    quiet_start: time | None = None,
    quiet_end: time | None = None,
    language: str | None = None,
) -> NotificationPreference:
    """Set how a patient (or a staff member) is reached; pending reminders are re-timed."""
    if (patient is None) == (user is None):
        raise CarnetError("Give a patient or a user.", field="patient")
    pref, _ = NotificationPreference.objects.get_or_create(patient=patient, user=user)
    if channels is not None:
        unknown = sorted(set(channels) - set(ALL_CHANNELS))
        if unknown:
            raise CarnetError(f"Unknown channels: {', '.join(unknown)}.", field="channels")
        pref.channels = list(dict.fromkeys(channels))
    if time_of_day is not None:
        pref.time_of_day = time_of_day
    if (quiet_start is None) != (quiet_end is None):
        raise CarnetError("Give both ends of the quiet hours, or neither.", field="quiet_end")
    pref.quiet_start, pref.quiet_end = quiet_start, quiet_end
    if language is not None:
        pref.language = language
    pref.full_clean()
    pref.save()
    _resync(patient)
    return pref


@transaction.atomic
def device_register(
    *,
    patient: Patient | None = None,
    user: User | None = None,
    channel: str,
    endpoint: str,
    p256dh: str = "",
    auth: str = "",
) -> Device:
    """Register (or re-activate) a push destination; pending reminders gain this device."""
    if channel not in PUSH_CHANNELS:
        raise CarnetError(f"Unknown push channel {channel!r}.", field="channel")
    if channel == Channel.WEBPUSH:
        allowed = ("https://", "http://") if getattr(settings, "NOTIFY_WEBPUSH_ALLOW_HTTP", False) else ("https://",)
        if not endpoint.startswith(allowed):
            raise CarnetError("A Web Push endpoint must be an https URL.", field="endpoint")
        if not p256dh or not auth:
            raise CarnetError("A Web Push subscription needs its p256dh and auth keys.", field="p256dh")
    device, _created = Device.objects.update_or_create(
        channel=channel,
        endpoint=endpoint,
        defaults={
            "patient": patient,
            "user": user,
            "p256dh": p256dh,
            "auth": auth,
            "active": True,
            "deactivated_at": None,
            "deactivation_reason": "",
        },
    )
    _resync(patient)
    return device


def device_deactivate(*, device: Device, reason: str, now: datetime | None = None) -> int:
    """A permanent failure (410 Gone, unregistered token): the device is off, its pending rows cancelled."""
    moment = now or timezone.now()
    with transaction.atomic():
        updated = Device.objects.filter(pk=device.pk, active=True).update(
            active=False, deactivated_at=moment, deactivation_reason=reason[:200]
        )
        if updated:
            fresh = Device.objects.get(pk=device.pk)
            Device.history.bulk_history_create([fresh], update=True, default_change_reason=reason[:100])
        pending = OutboxMessage.objects.filter(device_id=device.pk, state=OutboxState.PENDING)
        return _close(pending, state=OutboxState.CANCELLED, reason="device_gone", now=moment)


def address_suppress(*, email: str, reason: str, now: datetime | None = None) -> int:
    """A permanent bounce: never write to ``email`` again; its pending rows are cancelled."""
    moment = now or timezone.now()
    address = email.lower()
    with transaction.atomic():
        SuppressedAddress.objects.get_or_create(email=address, defaults={"reason": reason[:300]})
        patient_ids = list(Patient.objects.filter(email__iexact=address).values_list("pk", flat=True))
        user_ids = list(User.objects.filter(email__iexact=address).values_list("pk", flat=True))
        pending = OutboxMessage.objects.filter(channel=Channel.EMAIL, state=OutboxState.PENDING).filter(
            recipient_user_id__in=user_ids
        ) | OutboxMessage.objects.filter(
            channel=Channel.EMAIL, state=OutboxState.PENDING, recipient_user__isnull=True, patient_id__in=patient_ids
        ).exclude(kind__in=[MessageKind.DIGEST, MessageKind.UNDELIVERABLE])
        return _close(pending, state=OutboxState.CANCELLED, reason="address_bounced", now=moment)


# --- escalations: acknowledging stops repeats, resolving closes ---------------------------------


def escalation_messages_stop(*, escalation: Escalation, now: datetime | None = None) -> int:
    """After an acknowledgement or a resolution: cancel the pending staff messages of the level."""
    moment = now or timezone.now()
    rows = OutboxMessage.objects.filter(escalation_id=escalation.pk, state=OutboxState.PENDING)
    if escalation.resolved_at is None:
        rows = rows.filter(recipient_user__isnull=False)
    return _close(
        rows, state=OutboxState.CANCELLED, reason="resolved" if escalation.resolved_at else "acknowledged", now=moment
    )


def staff_for_patient(patient: Patient, roles: Sequence[str] = (Role.NURSE,)) -> list[User]:
    return [
        m.user
        for m in StaffMembership.objects.filter(care_team_id=patient.care_team_id, role__in=list(roles))
        .select_related("user")
        .order_by("pk")
        if m.user.is_active
    ]
