"""Writes of the plan: keep the stored plan in step with the facts, open and close escalations.

``plan_sync`` is called by every fact-changing service inside its transaction. It computes the
plan with the pure rules, diffs it against the stored rows by the rules' stable ``key`` and
writes only what changed: unchanged facts rewrite nothing, and ``version`` moves only when an
item's dates move. A batch of patients costs a fixed number of queries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from backend.bulk import array_text, rows_update
from backend.errors import CarnetError
from backend.heap import collection_paused
from patients.locks import patients_lock
from patients.models import Patient, TreatmentCourse, User
from scheduling import selectors
from scheduling.models import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    Escalation,
    ItemStatus,
    PlanItem,
    PlanState,
)
from scheduling.plan_state import plan_states_sync
from scheduling.rules import digest as rules_digest
from scheduling.rules import engine
from scheduling.rules.config import RulesConfig
from scheduling.rules.facts import PlanInput
from scheduling.rules.flags import Flag
from scheduling.rules.protocols import protocols

log = logging.getLogger(__name__)

DATE_FIELDS = ("due", "window_start", "window_end", "reminder_on")
STATE_FIELDS = (
    "kind",
    "protocol",
    "product",
    "dose_mg",
    "phase",
    "ordinal",
    "rule",
    "status",
    "level",
    "escalation",
    "blocked_by",
    "flags",
    "course_id",
)
# The fingerprint's fields in order, with the place ``days_late`` had before it was derived where
# it is read (``PlanItem.days_late``): 0 holds it, so the fingerprints stored before stay valid.
_LEVEL = STATE_FIELDS.index("level") + 1
FINGERPRINT_FIELDS = (*DATE_FIELDS, *STATE_FIELDS[:_LEVEL], "days_late", *STATE_FIELDS[_LEVEL:])
# Fact kinds that fulfil a plan item: when the item leaves the plan and such a fact exists
# on or after the item's window start, the item is done; otherwise it is cancelled.
DOSE_KINDS = frozenset({"injection", "consolidation", "vitamin_d_dose"})


@dataclass
class SyncResult:
    created: list[PlanItem] = field(default_factory=list)
    updated: list[PlanItem] = field(default_factory=list)
    moved: list[PlanItem] = field(default_factory=list)  # dates changed (version bumped)
    closed: list[PlanItem] = field(default_factory=list)
    reopened: list[PlanItem] = field(default_factory=list)  # closed rows planned again
    # Updated rows whose kind or protocol changed (what the outbox reads besides due and version).
    retyped: list[PlanItem] = field(default_factory=list)
    escalations_opened: list[Escalation] = field(default_factory=list)
    escalations_reopened: list[Escalation] = field(default_factory=list)  # with their item
    escalations_resolved: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.closed or self.escalations_opened)

    def outbox_patient_ids(self) -> set[int]:
        """The patients whose messages this sync may have changed.

        The outbox wants messages for the open items (their key, kind, protocol, due and version)
        and the open escalations (``notifications.services._desired``): items created, closed,
        reopened, moved (a new version) or retyped, and escalations opened (a ladder is resolved
        only with its item's close). An update of status, level, gates or flags
        alone, the nightly pass's usual change, leaves every message as it was.
        """
        rows: tuple[Any, ...] = (
            *self.created,
            *self.moved,
            *self.closed,
            *self.reopened,
            *self.retyped,
            *self.escalations_opened,
            *self.escalations_reopened,
        )
        return {row.patient_id for row in rows}

    def outbox_item_ids(self) -> set[int]:
        """The plan items of ``outbox_patient_ids``' patients whose messages the sync may have
        changed: the items themselves, and those whose ladder opened or reopened a level."""
        items = {row.pk for row in (*self.created, *self.moved, *self.closed, *self.reopened, *self.retyped)}
        items.update(esc.plan_item_id for esc in (*self.escalations_opened, *self.escalations_reopened))
        if None in items:  # not stored: a caller's bug, never a reason to skip a message
            raise ValueError("SyncResult.outbox_item_ids: an item or escalation without an id")
        return items


def patient_today(patient: Patient, now: datetime | None = None) -> date:
    """TIME-01: today is a local date in the patient's time zone."""
    return timezone.localtime(now or timezone.now(), ZoneInfo(patient.timezone)).date()


def plan_compute(patient: Patient, *, today: date | None = None) -> engine.Plan:
    """The plan the rules give for ``patient`` today, without storing anything."""
    day = today or patient_today(patient)
    facts = selectors.plan_inputs([patient], today_by_patient={patient.pk: day})[patient.pk]
    return engine.compute_plan(facts, today=day, config=selectors.rules_config())


def plan_sync(*, patient: Patient, now: datetime | None = None) -> SyncResult:
    """Re-plan one patient (inside the caller's transaction)."""
    return plans_sync_batch([patient], now=now)


# A batch of 500 leaves ~75k container objects to the collector (facts, plans, digests, rows) and
# no reference cycle: the collections they would trigger find nothing (backend.heap).
@transaction.atomic
@collection_paused()
def plans_sync_batch(patients: Sequence[Patient], *, now: datetime | None = None, outbox: str = "all") -> SyncResult:
    """Re-plan ``patients`` in a fixed number of queries and write only the differences.

    The rules run for every patient. A plan whose digest (``plan_digest``) is the one its plan
    state stored at the last sync is left as it is, without reading its items. The others are
    diffed item by item: each stored item carries a ``fingerprint`` of its values, so an
    unchanged item is recognised from a narrow read (id, key, fingerprint, status, level)
    without loading the row; only rows that differ, must close, or carry an escalation level
    are loaded whole. ``outbox="all"``
    re-syncs the outbox of every patient (a fact service); ``"changed"`` only the messages the sync may
    have changed, of those items (``SyncResult.outbox_item_ids``) of those patients
    (``outbox_patient_ids``): bulk passes; what else shapes messages, preferences, devices,
    consent and contact, re-syncs on its own change.
    """
    moment = now or timezone.now()
    patients_lock([p.pk for p in patients])
    today_by_patient = {p.pk: patient_today(p, moment) for p in patients}
    inputs = selectors.plan_inputs(patients, today_by_patient=today_by_patient)
    config = selectors.rules_config()
    plans = {p.pk: engine.compute_plan(inputs[p.pk], today=today_by_patient[p.pk], config=config) for p in patients}
    # A plan the rules give exactly as they gave it at the last sync is stored as it is: its items,
    # flags and escalations were written then, and only this sync writes them.
    digests = {pk: plan_digest(plan, config) for pk, plan in plans.items()}
    stored_digests: dict[int, int | None] = dict(
        PlanState.objects.filter(patient_id__in=list(plans)).values_list("patient_id", "digest")
    )
    changed = [p for p in patients if stored_digests.get(p.pk) != digests[p.pk]]
    result = SyncResult()
    if changed:
        _plans_store(changed, plans, inputs, result, moment, today_by_patient)
        # Every changed plan has its state row now (plan_states_sync creates missing ones).
        rows_update([PlanState(patient_id=p.pk, digest=digests[p.pk]) for p in changed], ["digest"])
    # The late items' days late are not stored (``PlanItem.days_late``): a plan whose only change
    # from one day to the next is that its late items are a day later has nothing to write.
    from notifications.services import outbox_sync  # lazy: notifications imports scheduling.models

    if outbox == "all":
        outbox_sync(patients=patients, result=result, now=moment)
    else:
        # Only the messages of the items whose messages may have changed (the rest are in step).
        changed_ids = result.outbox_patient_ids()
        outbox_sync(
            patients=[p for p in patients if p.pk in changed_ids],
            result=result,
            now=moment,
            items=result.outbox_item_ids(),
        )
    return result


def _plans_store(
    patients: Sequence[Patient],
    plans: dict[int, engine.Plan],
    inputs: dict[int, PlanInput],
    result: SyncResult,
    moment: datetime,
    today_by_patient: dict[int, date],
) -> None:
    """Write the differences between ``plans`` and the stored items, escalations and plan states."""
    # Only the rows that can change: the open ones, and closed ones whose key is planned again
    # (a voided dose reopens its item). Years of done items stay unread. Only the keys of these
    # patients' plans: the rows read are theirs (a batch's other plans, unchanged, would add
    # ~28 keys a patient to the parameter for nothing).
    planned_keys = {item.key for patient in patients for item in plans[patient.pk].items}
    brief: dict[int, dict[str, _Brief]] = defaultdict(dict)
    for raw in (
        PlanItem.objects.filter(patient_id__in=[p.pk for p in patients])
        .filter(Q(closed_at__isnull=True) | Q(key__in=_one_parameter(planned_keys)))
        .values_list("pk", "patient_id", "key", "fingerprint", "status", "level", "closed_at")
    ):
        brief[raw[1]][raw[2]] = _Brief(*raw)
    wanted: dict[int, dict[str, _Planned]] = {}
    whole: set[int] = set()  # rows to load whole: changed or to close
    # Unchanged rows on an escalation ladder: the stored values are the planned ones (same
    # fingerprint), so the ladder check reads them from the plan, not from a loaded row.
    laddered: list[_Ladder] = []
    for patient in patients:
        planned_by_key = wanted[patient.pk] = _plan_fingerprints(plans[patient.pk])
        for key, seen in brief[patient.pk].items():
            planned = planned_by_key.get(key)
            if planned is None:
                if seen.status not in CLOSED_STATUSES:
                    whole.add(seen.pk)
            elif seen.fingerprint != planned.fingerprint or seen.closed_at is not None:
                whole.add(seen.pk)
            elif seen.level:
                laddered.append(_Ladder.of(seen.pk, patient.pk, planned.item))
    loaded = PlanItem.objects.in_bulk(list(whole)) if whole else {}
    stored: dict[int, dict[str, PlanItem]] = defaultdict(dict)
    for row in loaded.values():
        stored[row.patient_id][row.key] = row
    to_create: list[PlanItem] = []
    to_update: list[PlanItem] = []
    fingerprinted: list[PlanItem] = []  # values unchanged, only the fingerprint to store
    # Only the columns some row changed are written: a nightly status shift should not rewrite
    # dates, keys and flags (one array per column on PostgreSQL, one CASE per column elsewhere).
    columns: set[str] = {"fingerprint", "updated_at"}
    reopened_from: dict[int, datetime] = {}  # item pk -> when it had been closed
    for patient in patients:
        rows = stored[patient.pk]
        known = brief[patient.pk]
        for key, planned in wanted[patient.pk].items():
            if key not in known:
                new = PlanItem(patient=patient, key=key, version=1, dates_changed_at=moment, **planned.values())
                to_create.append(new)
                result.created.append(new)
                continue
            existing = rows.get(key)
            if existing is None:
                continue  # same fingerprint and open: unchanged
            row = existing
            values = planned.values()
            moved = any(getattr(row, name) != values[name] for name in DATE_FIELDS)
            changed = moved or any(getattr(row, name) != values[name] for name in STATE_FIELDS)
            if row.closed_at is not None:
                changed = True
            if not changed:
                if row.fingerprint != values["fingerprint"]:  # an older row without one
                    row.fingerprint = values["fingerprint"]
                    fingerprinted.append(row)
                continue
            differ = [name for name, value in values.items() if getattr(row, name) != value]
            columns.update(differ)
            if "kind" in differ or "protocol" in differ:
                result.retyped.append(row)
            for name, value in values.items():
                setattr(row, name, value)
            if row.closed_at is not None:
                # A closed item planned again (its dose voided): a new version, so its reminders
                # are new messages (the closed version's were cancelled, and a key is written
                # once) and calendars take the un-cancelled event (a higher SEQUENCE).
                reopened_from[row.pk] = row.closed_at
                row.closed_at = None
                columns.add("closed_at")
                result.reopened.append(row)
            if moved or row.pk in reopened_from:
                row.version += 1  # once, when an item both reopens and moves
                columns.add("version")
            if moved:
                row.dates_changed_at = moment
                columns.add("dates_changed_at")
                result.moved.append(row)
            row.updated_at = moment
            to_update.append(row)
            result.updated.append(row)
        for key, row in rows.items():
            if key in wanted[patient.pk] or row.status in CLOSED_STATUSES:
                continue
            row.status = ItemStatus.DONE if _fulfilled(row, inputs[patient.pk]) else ItemStatus.CANCELLED
            row.closed_at = moment
            row.updated_at = moment
            columns.update(("status", "closed_at"))
            to_update.append(row)
            result.closed.append(row)
    if to_create:
        PlanItem.objects.bulk_create(to_create, batch_size=1000)
    if to_update:
        rows_update(to_update, sorted(columns))
    if fingerprinted:
        rows_update(fingerprinted, ["fingerprint"])
    if result.closed:
        from scheduling.appointments import appointments_close_for_items

        # A done item's booked appointment is done; a cancelled item's is cancelled (iCal).
        appointments_close_for_items(result.closed, now=moment)
    if reopened_from:
        from scheduling.appointments import appointments_reopen_for_items

        # And an item planned again gets back the appointment its close closed.
        appointments_reopen_for_items(reopened_from, now=moment)
    _escalations_sync(
        patients, stored, to_create, result, moment, today_by_patient, unchanged=laddered, reopened_from=reopened_from
    )
    # The patient-level flags and the plan's revision (ETag) the plan endpoints read.
    plan_states_sync({p.pk: plans[p.pk] for p in patients}, result=result, now=moment)


def _one_parameter(values: set[str]) -> Any:
    """``values`` for an ``__in`` lookup; on PostgreSQL one array parameter rather than one
    placeholder per value (tens of thousands of keys per batch cost more to bind than to run)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        # As array text (``backend.bulk.array_text``): psycopg would quote each key in Python.
        return RawSQL("SELECT unnest(%s::text[])", [array_text(sorted(values))])
    return values


class _Ladder(NamedTuple):
    """What the escalation ladder reads of an item (a stored row has the same attributes)."""

    pk: int
    patient_id: int
    protocol: str
    level: str
    status: str
    rule: str
    due: date
    escalation: dict[str, str]

    @classmethod
    def of(cls, pk: int, patient_id: int, item: engine.PlanItem) -> _Ladder:
        escalation = {level: day.isoformat() for level, day in item.escalation.items()}
        return cls(pk, patient_id, item.protocol or "", item.level or "", item.status, item.rule, item.due, escalation)


class _Brief(NamedTuple):
    """The narrow read of a stored item: enough to tell whether it changed."""

    pk: int
    patient_id: int
    key: str
    fingerprint: int | None
    status: str
    level: str
    closed_at: datetime | None


class _Planned(NamedTuple):
    """An item of the new plan, its subject flags and the fingerprint of its stored values."""

    item: engine.PlanItem
    flags: list[dict[str, object]]
    fingerprint: int

    def values(self) -> dict[str, Any]:
        """The stored values (built only for the rows that are written)."""
        values = _row_values(self.item)
        values["flags"] = self.flags
        values["fingerprint"] = self.fingerprint
        return values


def _plan_fingerprints(plan: engine.Plan) -> dict[str, _Planned]:
    """Each item of ``plan`` by key, with the fingerprint its stored row will carry."""
    item_flags: dict[str, list[dict[str, object]]] = defaultdict(list)
    for flag in plan.flags:
        if flag.subject is not None:
            item_flags[flag.subject].append(flag_json(flag))
    out: dict[str, _Planned] = {}
    for item in plan.items:
        flags = item_flags.get(item.key, [])
        out[item.key] = _Planned(item, flags, _item_fingerprint(item, flags))
    return out


def _plan_values(plan: engine.Plan) -> dict[str, dict[str, Any]]:
    """The stored values of each item of ``plan``, by key, with their fingerprint."""
    return {key: planned.values() for key, planned in _plan_fingerprints(plan).items()}


# One encoder, made once: ``json.dumps`` with options builds a new one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))


def fingerprint(values: dict[str, object]) -> int:
    """A signed 64-bit digest of an item's stored values (DATE_FIELDS and STATE_FIELDS).

    Canonical JSON (sorted keys; dates and decimals as their ``str``), so values read back from
    the database give the same digest as the rules' own. A collision (2**-64) would only delay a
    rewrite to the next change of the item.
    """
    # Dates and decimals turned into their ``str`` here give the very text ``default=str`` would,
    # and keep the C encoder from calling back into Python for each. ``days_late`` is not stored
    # (0 holds its place in FINGERPRINT_FIELDS, so fingerprints stored before stay valid).
    return _digest([0 if name == "days_late" else _canonical(values[name]) for name in FINGERPRINT_FIELDS])


def _item_fingerprint(item: engine.PlanItem, flags: list[dict[str, object]]) -> int:
    """``fingerprint(_row_values(item) | {"flags": flags})``, in FINGERPRINT_FIELDS order, straight
    from the engine's item: an unchanged item (nearly all of them in a re-plan) is recognised
    without building its row."""
    return _digest(
        [
            item.due.isoformat(),
            item.window_start.isoformat(),
            item.window_end.isoformat(),
            item.reminder.isoformat(),
            item.kind,
            item.protocol or "",
            item.product or "",
            None if item.dose_mg is None else _dose_text(item.dose_mg),
            item.phase or "",
            item.ordinal or 0,
            item.rule,
            item.status,
            item.level or "",
            0,  # days_late's place: see fingerprint
            {level: day.isoformat() for level, day in item.escalation.items()},
            list(item.blocked_by),
            flags,
            _course_id(item.course_key),
        ]
    )


def _digest(canonical: list[object]) -> int:
    raw = _CANONICAL.encode(canonical)
    return int.from_bytes(hashlib.blake2b(raw.encode(), digest_size=8).digest(), "big", signed=True)


# A plan's digest covers every field of its items and flags but ``days_late`` (it moves every
# day on late items and is not stored: ``PlanItem.days_late``): the compiled module names them one by one, so a
# field added to either class must be added there (checked here, at import).
assert set(rules_digest.ITEM_FIELDS) == {f.name for f in dataclass_fields(engine.PlanItem)} - {"days_late"}
assert set(rules_digest.FLAG_FIELDS) == {f.name for f in dataclass_fields(Flag)}


def plan_digest(plan: engine.Plan, config: RulesConfig) -> int:
    """A signed 64-bit digest of everything ``plan`` stores: every field of its items and flags,
    but the items' ``days_late`` (derived where it is read: ``PlanItem.days_late``).

    Equal digests mean the rules gave exactly the plan the last sync stored, so that sync's items,
    escalations and plan state stand. The rules' configuration is part of it (a ladder's offsets
    change what is stored), and so is the source of this module, which turns a plan into rows,
    and of the digest's own (``scheduling.rules.digest``, compiled with the rules): a deploy that
    changes either is diffed item by item once. ~0.03 ms for thirty items compiled.
    """
    return rules_digest.plan_digest(plan, _salt(config))


@lru_cache(maxsize=8)
def _salt(config: RulesConfig) -> str:
    return _SYNC_SOURCE + hashlib.blake2b(repr(config).encode(), digest_size=16).hexdigest()


def _source_digest() -> str:
    """A hash of this module's source and of the digest's (read from the ``.py`` file even when
    the compiled module runs, so that compiled and plain processes agree)."""
    found = hashlib.blake2b(digest_size=16)
    for path in (__file__, os.path.join(os.path.dirname(__file__), "rules", "digest.py")):
        try:
            with open(path, "rb") as source:
                found.update(source.read())
        except OSError:  # no source shipped: the module's name stands for it
            found.update(path.encode())
    return found.hexdigest()


_SYNC_SOURCE = _source_digest()


def _canonical(value: object) -> object:
    cls = type(value)
    return str(value) if cls is date or cls is Decimal else value


@lru_cache(maxsize=256)
def _dose_mg(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.1"))


def _dose_text(value: float) -> str:
    return str(_dose_mg(value))


def _course_id(course_key: str | None) -> int | None:
    return int(course_key) if course_key and course_key.isdigit() else None


def _row_values(item: engine.PlanItem) -> dict[str, object]:
    return {
        "kind": item.kind,
        "protocol": item.protocol or "",
        "product": item.product or "",
        "dose_mg": None if item.dose_mg is None else _dose_mg(item.dose_mg),
        "phase": item.phase or "",
        "ordinal": item.ordinal or 0,
        "rule": item.rule,
        "due": item.due,
        "window_start": item.window_start,
        "window_end": item.window_end,
        "reminder_on": item.reminder,
        "status": item.status,
        "level": item.level or "",
        "escalation": {level: day.isoformat() for level, day in item.escalation.items()},
        "blocked_by": list(item.blocked_by),
        "course_id": _course_id(item.course_key),
    }


def flag_json(flag: Flag) -> dict[str, object]:
    return {
        "code": flag.code,
        "rule": flag.rule,
        "severity": flag.severity,
        "blocks": flag.blocks,
        "override_allowed": flag.override_allowed,
        "params": dict(flag.params),
    }


def _fulfilled(row: PlanItem, facts: PlanInput) -> bool:
    """Did a recorded fact complete this item, rather than a change of plan cancel it?"""
    since = row.window_start or row.due
    if row.kind in DOSE_KINDS:
        return any(
            d.given_on >= since
            and (row.course_id is None or d.course_key == str(row.course_id) or row.kind != "injection")
            for d in facts.doses
        )
    tests = {
        "calcium_check": {"calcium_total", "calcium_ionised"},
        "vitamin_d_test": {"25ohd"},
        "ctx_check": {"ctx"},
    }.get(row.kind)
    if tests is not None:
        return any(lab.test in tests and lab.date >= since for lab in facts.labs)
    if row.kind == "dental_visit":
        return any(e.date >= since for e in facts.dental)
    return False


# --- escalations (OP-04, ONC-02, ZOL-08, CONS-05) -------------------------------------------

LEVELS = ("L1", "L2", "L3", "L4")


def _escalations_sync(
    patients: Sequence[Patient],
    stored: dict[int, dict[str, PlanItem]],
    created_rows: list[PlanItem],
    result: SyncResult,
    moment: datetime,
    today_by_patient: dict[int, date],
    unchanged: Sequence[_Ladder] = (),
    reopened_from: dict[int, datetime] | None = None,
) -> None:
    """Open each reached level once; resolve a ladder when its item is done or cancelled.

    ``stored`` holds the rows loaded whole (changed ones carry their new values), ``unchanged``
    the open items on a ladder whose stored values are the planned ones.
    """
    ladders = protocols(selectors.rules_config())
    patient_ids = [p.pk for p in patients]
    open_items: list[PlanItem | _Ladder] = [
        row for rows in stored.values() for row in rows.values() if row.level and row.status in OPEN_STATUSES
    ]
    open_items += [row for row in created_rows if row.level]
    open_items += [row for row in unchanged if row.status in OPEN_STATUSES]
    if reopened_from:
        _escalations_reopen(result, reopened_from, moment)
    existing: set[tuple[int, str]] = set(
        Escalation.objects.filter(patient_id__in=patient_ids).values_list("plan_item_id", "level")
    )
    new: list[Escalation] = []
    for row in open_items:
        protocol = ladders.get(row.protocol)
        if protocol is None:
            continue
        reached = LEVELS[: LEVELS.index(row.level) + 1]
        for step in protocol.escalation:
            if step.level not in reached or (row.pk, step.level) in existing:
                continue
            opened_on = date.fromisoformat(row.escalation.get(step.level, row.due.isoformat()))
            new.append(
                Escalation(
                    plan_item_id=row.pk,
                    patient_id=row.patient_id,
                    level=step.level,
                    rule=row.rule,
                    severity=step.severity,
                    notify=list(step.notify),
                    opened_at=moment,
                    opened_on=min(opened_on, today_by_patient[row.patient_id]),
                )
            )
    if new:
        Escalation.objects.bulk_create(new, batch_size=1000)
        result.escalations_opened.extend(new)
    closed_ids = [row.pk for row in result.closed]
    if closed_ids:
        done_ids = [row.pk for row in result.closed if row.status == ItemStatus.DONE]
        result.escalations_resolved += Escalation.objects.filter(
            plan_item_id__in=done_ids, resolved_at__isnull=True
        ).update(resolved_at=moment, resolution="given")
        result.escalations_resolved += Escalation.objects.filter(
            plan_item_id__in=[pk for pk in closed_ids if pk not in done_ids], resolved_at__isnull=True
        ).update(resolved_at=moment, resolution="cancelled")


# The resolutions a re-plan writes when it closes an item (a staff member's own stays).
_CLOSED_WITH_ITEM = ("given", "cancelled")


def _escalations_reopen(result: SyncResult, closed_at: dict[int, datetime], moment: datetime) -> None:
    """Items planned again after a close (their dose voided; ``closed_at``: item pk -> when it
    had been closed): the levels they still stand at, resolved by that close, open again,
    unacknowledged, as of ``moment``, with new messages (``reopened`` counts it). Levels above
    the item's present one stay resolved; levels it reaches later open as usual."""
    reached = {row.pk: LEVELS[: LEVELS.index(row.level) + 1] for row in result.reopened if row.level in LEVELS}
    if not reached:
        return
    rows = [
        esc
        for esc in Escalation.objects.filter(
            plan_item_id__in=list(reached), resolved_at__isnull=False, resolution__in=_CLOSED_WITH_ITEM
        ).order_by("pk")
        if esc.level in reached[esc.plan_item_id] and esc.resolved_at == closed_at[esc.plan_item_id]
    ]
    for esc in rows:
        esc.resolved_at, esc.resolution, esc.acknowledged_at, esc.acknowledged_by = None, "", None, None
        esc.opened_at = moment
        esc.reopened += 1
    if rows:
        fields = ["resolved_at", "resolution", "acknowledged_at", "acknowledged_by", "opened_at", "reopened"]
        Escalation.objects.bulk_update(rows, fields)
        Escalation.history.bulk_history_create(rows, update=True, default_change_reason="reopened with its item")
        result.escalations_reopened.extend(rows)


@transaction.atomic
def escalation_acknowledge(*, escalation: Escalation, by: User) -> Escalation:
    """Acknowledging a level stops its repeats; it does not close the ladder."""
    locked = Escalation.objects.select_for_update().get(pk=escalation.pk)
    if locked.resolved_at is not None:
        raise CarnetError("This escalation is already resolved.", field="escalation", code="resolved")
    if locked.acknowledged_at is None:
        locked.acknowledged_at = timezone.now()
        locked.acknowledged_by = by
        locked._history_user = by  # type: ignore[attr-defined]  # read by simple-history
        locked.save(update_fields=["acknowledged_at", "acknowledged_by"])
    _escalation_messages_stop(locked)
    return locked


def _escalation_messages_stop(escalation: Escalation) -> None:
    from notifications.services import escalation_messages_stop

    # Acknowledged: the level's repeats to staff stop. Resolved: all its pending messages stop.
    escalation_messages_stop(escalation=escalation)


@transaction.atomic
def escalation_resolve(*, escalation: Escalation, by: User, resolution: str) -> Escalation:
    locked = Escalation.objects.select_for_update().get(pk=escalation.pk)
    if locked.resolved_at is None:
        locked.resolved_at = timezone.now()
        locked.resolution = resolution[:30]
        if locked.acknowledged_at is None:
            locked.acknowledged_at = locked.resolved_at
            locked.acknowledged_by = by
        locked._history_user = by  # type: ignore[attr-defined]  # read by simple-history
        locked.save(update_fields=["resolved_at", "resolution", "acknowledged_at", "acknowledged_by"])
    _escalation_messages_stop(locked)
    return locked


# --- gates on recording a dose (section 2: CA-03/05, VITD-04, DENT-01/02, ZOL-03, CONS-04, DUP-01)


def dose_gates_check(*, patient: Patient, course: TreatmentCourse, on: date, override_reason: str) -> list[str]:
    """Refuse a blocked dose, or accept it with an emergency override; return what was overridden."""
    facts = selectors.plan_inputs([patient], today_by_patient={patient.pk: on})[patient.pk]
    flags = engine.evaluate_gates(facts, on=on, protocol=course.protocol, config=selectors.rules_config())
    blocking = [f for f in flags if f.blocks]
    hard = [f for f in blocking if not f.override_allowed]
    if hard:
        codes = ", ".join(f.code for f in hard)
        raise CarnetError(
            f"This dose is blocked ({codes}) and the block cannot be overridden.",
            field="given_at",
            code="blocked",
        )
    if blocking and not override_reason:
        codes = ", ".join(f.code for f in blocking)
        raise CarnetError(
            f"This dose is blocked ({codes}); an emergency override needs a reason.",
            field="override_reason",
            code="override_required",
        )
    return [f.code for f in blocking]


# --- bulk re-planning -----------------------------------------------------------------------


def plans_rebuild(
    *,
    patient_ids: Iterable[int] | None = None,
    progress: bool = False,
    batch_size: int = 500,
    outbox: str = "changed",
    now: datetime | None = None,
) -> int:
    """Re-plan many patients in batches (demo data, the nightly pass, benchmarks).

    By default only the patients whose plan changed have their outbox re-synced (see
    ``plans_sync_batch``); ``outbox="all"`` re-syncs everyone's, e.g. after a policy change.
    ``now`` is the instant planned for (default: now).
    """
    ids = (
        list(patient_ids)
        if patient_ids is not None
        else list(Patient.objects.order_by("pk").values_list("pk", flat=True))
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), unit="patient", desc="plans")
    done = 0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        batch = list(
            Patient.objects.filter(pk__in=chunk).only(
                "pk", "timezone", "birth_date", "sex", "weight_kg", "dialysis", "risk_factors", "predispositions"
            )
        )
        plans_sync_batch(batch, outbox=outbox, now=now)
        done += len(batch)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return done


def plans_refresh_due(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Nightly: re-plan every patient with an item whose reminder, window or due date has come.

    Statuses move with the calendar (due, overdue L1…L4) and so do the gates (a calcium older
    than 30 days, CA-05), so the pass re-runs the rules rather than shifting statuses in SQL.
    Patients with nothing near are untouched. In one process; the beat task spreads the same
    patients over the workers (``scheduling.tasks.plan_refresh_statuses``).
    """
    return plans_rebuild(patient_ids=patients_due_refresh(now=now), batch_size=batch_size)


def patients_due_refresh(*, now: datetime | None = None) -> list[int]:
    """The patients the nightly pass re-plans: an open item's reminder, window or due date has
    come (by tomorrow, so that every local midnight of the pass's run is covered)."""
    moment = now or timezone.now()
    horizon = timezone.localdate(moment)
    return list(selectors.patients_with_open_items(due_on_or_before=horizon + timedelta(days=1)))
