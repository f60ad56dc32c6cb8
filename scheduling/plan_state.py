"""The stored plan as the patient API serves it: open items and patient-level flags, no rules run.

Write side: ``plan_states_sync`` is called by ``plans_sync_batch`` (every fact service, the
nightly pass, rebuilds) after it writes the items. It keeps one ``PlanState`` row per patient
with the patient-level flags and a ``revision`` that changes when anything stored that the plan
endpoints show changed (days late change with the date, which the ETag has too), in two queries
per batch (one read, one upsert of the changed rows only).

Read side: ``plan_state_of`` (one row: revision and flags) and ``open_items`` (the open items as
plain dicts, in the shape of ``scheduling.serializers.PlanItemSerializer``), so ``GET /me/plan``
costs two indexed queries and no serializer instances; on PostgreSQL ``open_items_json`` has
the database write the items' JSON, and ``plan_state_and_items_json`` reads the state with them
in one statement.

Statuses are those of the last re-plan: every fact change re-plans at once, and the nightly pass
(23:05 UTC) re-plans every patient with an item near its reminder, window or due date. Between a
patient's local midnight and that pass, an item's status can still be the previous day's (``due``
where today it is ``overdue_L1``): statuses are not shifted at read time, because a dose that
becomes givable today must first go through today's gates (CA-05 calcium age, …), which only the
rules evaluate. Days late are not stored: an item of a late status is read ``days_late_on`` the
reader's date (the patient's local today, which the plan's ETag names), so a plan whose late
items only grow a day older is written by no one and its ETag still changes with the date.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from django.db import connection

from backend.conditional import json_object_sql, json_text, json_value_sql
from backend.prepared import Prepared
from patients.models import Product, Protocol
from scheduling.models import OPEN_STATUSES, ItemKind, ItemStatus, Level, PlanItem, PlanState
from scheduling.rules.flags import message as flag_message
from scheduling.rules.items import LATE, days_late_on
from scheduling.rules.unblock import unblock_hint

if TYPE_CHECKING:
    from scheduling.rules.engine import Plan
    from scheduling.services import SyncResult

# --- write: kept in step by every re-plan ----------------------------------------------------


def plan_states_sync(plans: Mapping[int, Plan], *, result: SyncResult, now: datetime) -> set[int]:
    """Store each patient's patient-level flags; give a new revision to every changed plan.

    Returns the patients whose state was written (a new revision).
    """
    from scheduling.services import flag_json  # lazy: services imports this module

    changed = {row.patient_id for rows in (result.created, result.updated, result.closed) for row in rows}
    stored = dict(PlanState.objects.filter(patient_id__in=list(plans)).values_list("patient_id", "flags"))
    rows = []
    for patient_id, plan in plans.items():
        flags = [flag_json(f) for f in plan.flags if f.subject is None]
        if patient_id in stored and patient_id not in changed and stored[patient_id] == flags:
            continue
        rows.append(PlanState(patient_id=patient_id, flags=flags, revision=uuid.uuid4(), updated_at=now))
    if rows:
        PlanState.objects.bulk_create(
            rows,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["patient"],
            update_fields=["flags", "revision", "updated_at"],
        )
    return {row.patient_id for row in rows}


# --- read: the plan endpoints -----------------------------------------------------------------


def plan_state_of(patient_id: int) -> PlanState | None:
    """The patient's plan state (revision, flags), or None if not re-planned since it existed.

    Read on every plan request before anything else (the ETag): a prepared statement, as the
    ORM's query building (and PostgreSQL's planning) would cost more than the query.
    """
    with connection.cursor() as cursor:
        _STATE_STATEMENT.run(cursor, [patient_id])
        row = cursor.fetchone()
    return None if row is None else _state(patient_id, *row)


def _state(patient_id: int, revision: Any, flags: str) -> PlanState:
    return PlanState(
        patient_id=patient_id,
        revision=revision if isinstance(revision, uuid.UUID) else uuid.UUID(str(revision)),
        flags=json.loads(flags),
    )


_STATE_SQL = "SELECT revision, flags FROM scheduling_planstate WHERE patient_id = %s"
_STATE_STATEMENT = Prepared("carnet_plan_state", _STATE_SQL, ("bigint",))


ITEM_COLUMNS = (
    "public_id",
    "kind",
    "protocol",
    "product",
    "dose_mg",
    "phase",
    "ordinal",
    "rule",
    "course__public_id",
    "due",
    "window_start",
    "window_end",
    "reminder_on",
    "status",
    "level",
    "escalation",
    "blocked_by",
    "flags",
    "version",
)


def flag_out(flag: Mapping[str, Any], lang: str) -> dict[str, Any]:
    """A stored flag explained in ``lang`` (``scheduling.serializers.FlagSerializer``'s shape)."""
    params = flag.get("params") or {}
    code = str(flag.get("code", ""))
    return {
        "code": code,
        "rule": str(flag.get("rule", "")),
        "severity": str(flag.get("severity", "")),
        "blocks": bool(flag.get("blocks", False)),
        "override_allowed": bool(flag.get("override_allowed", False)),
        "message": flag_message(code, lang, params if isinstance(params, dict) else {}),
    }


def blocks_out(blocked_by: list[str], flags: list[Any], lang: str) -> list[dict[str, Any]]:
    """What blocks an item and what lifts it, in ``lang`` (``BlockSerializer``'s shape)."""
    by_code = {f.get("code"): f for f in flags if isinstance(f, dict)}
    out = []
    for code in blocked_by:
        flag = by_code.get(code, {})
        params = flag.get("params") or {}
        out.append(
            {
                "code": code,
                "rule": str(flag.get("rule", "")),
                "message": flag_message(code, lang, params if isinstance(params, dict) else {}),
                "unblock": unblock_hint(code, lang),
                "override_allowed": bool(flag.get("override_allowed", False)),
            }
        )
    return out


def _day(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def open_items(patient_id: int, *, lang: str, today: date) -> list[dict[str, Any]]:
    """The patient's open plan items, soonest first, as ``PlanItemSerializer`` renders them, their
    days late on ``today`` (the patient's local date, which the plan's ETag names)."""
    rows = (
        PlanItem.objects.filter(patient_id=patient_id, closed_at__isnull=True, status__in=OPEN_STATUSES)
        .order_by("due", "kind", "pk")
        .values_list(*ITEM_COLUMNS)
    )
    out = []
    for (
        public_id,
        kind,
        protocol,
        product,
        dose_mg,
        phase,
        ordinal,
        rule,
        course,
        due,
        window_start,
        window_end,
        reminder_on,
        status,
        level,
        escalation,
        blocked_by,
        flags,
        version,
    ) in rows:
        out.append(
            {
                "id": str(public_id),
                "kind": kind,
                "protocol": protocol,
                "product": product,
                "dose_mg": None if dose_mg is None else str(dose_mg),
                "phase": phase,
                "ordinal": ordinal,
                "rule": rule,
                "course": None if course is None else str(course),
                "due": _day(due),
                "window_start": _day(window_start),
                "window_end": _day(window_end),
                "reminder_on": _day(reminder_on),
                "status": status,
                "level": level,
                "days_late": days_late_on(status, due, today),
                "escalation": dict(escalation),
                "blocked_by": [str(code) for code in blocked_by],
                "blocks": blocks_out(blocked_by, flags, lang),
                "flags": [flag_out(f, lang) for f in flags if isinstance(f, dict)],
                "version": version,
            }
        )
    return out


# --- the plan rendered by PostgreSQL -------------------------------------------------------------
#
# On PostgreSQL each open item comes out of the database as JSON text up to ``blocked_by``; Python
# only adds ``blocks`` and ``flags`` (explained in the reader's language, so from the catalogue),
# most often both empty, and ``version``. Same fields, same order, same values as ``open_items``
# (tests/api/test_plan_booklet_reads.py compares both with ``PlanItemSerializer``).

# ``days_late_on`` with the reader's date as the statement's first parameter (the statuses are the
# code's constants).
_DAYS_LATE_SQL = "CASE WHEN i.status IN ({late}) THEN GREATEST(%s - i.due, 0) ELSE 0 END".format(
    late=", ".join(f"'{status}'" for status in LATE)
)
_ITEM_JSON = json_object_sql(
    [  # (name, JSON text of the column: backend.conditional.json_value_sql, to_json only where text is escaped)
        ("id", json_value_sql("i.public_id", "uuid")),
        ("kind", json_value_sql("i.kind", "text", plain=ItemKind.values)),
        ("protocol", json_value_sql("i.protocol", "text", plain=Protocol.values)),
        ("product", json_value_sql("i.product", "text", plain=Product.values)),
        ("dose_mg", json_value_sql("round(i.dose_mg, 1)", "string")),
        ("phase", json_value_sql("i.phase", "text")),
        ("ordinal", json_value_sql("i.ordinal", "int")),
        ("rule", json_value_sql("i.rule", "text")),
        ("course", json_value_sql("c.public_id", "uuid")),
        ("due", json_value_sql("i.due")),
        ("window_start", json_value_sql("i.window_start")),
        ("window_end", json_value_sql("i.window_end")),
        ("reminder_on", json_value_sql("i.reminder_on")),
        ("status", json_value_sql("i.status", "text", plain=ItemStatus.values)),
        ("level", json_value_sql("i.level", "text", plain=Level.values)),
        ("days_late", json_value_sql(_DAYS_LATE_SQL, "int")),
        ("escalation", json_value_sql("i.escalation")),
        ("blocked_by", json_value_sql("i.blocked_by")),
    ],
    json_values=True,
)
_OPEN_ITEMS_SQL = """
SELECT {item}, i.flags::text, i.blocked_by::text, i.version
FROM scheduling_planitem i LEFT JOIN patients_treatmentcourse c ON c.id = i.course_id
WHERE i.patient_id = %s AND i.closed_at IS NULL AND i.status IN ({open})
ORDER BY i.due, i.kind, i.id
""".format(item=_ITEM_JSON, open=", ".join(f"'{status}'" for status in OPEN_STATUSES))  # the code's constants
_OPEN_ITEMS = Prepared("carnet_open_items", _OPEN_ITEMS_SQL, ("date", "bigint"))


def open_items_json(patient_id: int, *, lang: str, today: date) -> str:
    """``open_items`` as a JSON array (PostgreSQL renders the rows; other databases: ``open_items``)."""
    if connection.vendor != "postgresql":
        return json_text(open_items(patient_id, lang=lang, today=today))
    with connection.cursor() as cursor:
        _OPEN_ITEMS.run(cursor, [today, patient_id])
        return _items_json(cursor.fetchall(), lang)


def _items_json(rows: list[tuple[Any, ...]], lang: str) -> str:
    """The JSON array of the open items' rows: (head, flags, blocked_by, version) each."""
    out = []
    for head, flags_text, blocked_text, version in rows:
        if flags_text == "[]" and blocked_text == "[]":
            blocks = flags = "[]"
        else:
            stored = json.loads(flags_text)
            blocks = json_text(blocks_out(json.loads(blocked_text), stored, lang))
            flags = json_text([flag_out(f, lang) for f in stored if isinstance(f, dict)])
        out.append(f'{head[:-1]},"blocks":{blocks},"flags":{flags},"version":{int(version)}}}')
    return "[" + ",".join(out) + "]"


# The plan state and its open items in one statement: one round trip instead of two for a plan
# that must be rendered (each round trip costs the worker more CPU than PostgreSQL spends on the
# state's row), both from one snapshot, so the ETag made from this revision names this very body.
# The state comes from two uncorrelated sub-queries, run once per execution, on every item row.
# Not a LATERAL join of the items to the state: PostgreSQL then builds each item's JSON before
# sorting the rows, not after, and writes the state's flags on every row (~0.2 ms more per plan).
_STATE_ITEMS_SQL = """
SELECT {item}, i.flags::text, i.blocked_by::text, i.version,
    (SELECT s.revision FROM scheduling_planstate s WHERE s.patient_id = %s),
    (SELECT s.flags::text FROM scheduling_planstate s WHERE s.patient_id = %s)
FROM scheduling_planitem i LEFT JOIN patients_treatmentcourse c ON c.id = i.course_id
WHERE i.patient_id = %s AND i.closed_at IS NULL AND i.status IN ({open})
ORDER BY i.due, i.kind, i.id
""".format(  # noqa: S608  # the code's constants
    item=_ITEM_JSON, open=", ".join(f"'{status}'" for status in OPEN_STATUSES)
)
_STATE_ITEMS = Prepared("carnet_plan_state_items", _STATE_ITEMS_SQL, ("date", "bigint", "bigint", "bigint"))


def plan_state_and_items_json(patient_id: int, *, lang: str, today: date) -> tuple[PlanState, str] | None:
    """``plan_state_of`` and ``open_items_json`` together: one statement, one snapshot on
    PostgreSQL when the plan has an open item (elsewhere, or with none, the two reads). None if
    the patient has no plan state."""
    if connection.vendor == "postgresql":
        rows = _STATE_ITEMS.fetchall([today, patient_id, patient_id, patient_id])
        if rows and rows[0][4] is not None:
            return _state(patient_id, rows[0][4], rows[0][5]), _items_json([row[:4] for row in rows], lang)
    state = plan_state_of(patient_id)
    return None if state is None else (state, open_items_json(patient_id, lang=lang, today=today))
