"""The stored plan as the patient API serves it: open items and patient-level flags, no rules run.

Write side: ``plan_states_sync`` is called by ``plans_sync_batch`` (every fact service, the
nightly pass, rebuilds) after it writes the items. It keeps one ``PlanState`` row per patient
with the patient-level flags and a ``revision`` that changes when anything the plan endpoints
show changed, in two queries per batch (one read, one upsert of the changed rows only).

Read side: ``plan_state_of`` (one row: revision and flags) and ``open_items`` (the open items as
plain dicts, in the shape of ``scheduling.serializers.PlanItemSerializer``), so ``GET /me/plan``
costs two indexed queries and no serializer instances.

Statuses are those of the last re-plan: every fact change re-plans at once, and the nightly pass
(23:05 UTC) re-plans every patient with an item near its reminder, window or due date. Between a
patient's local midnight and that pass, an item's status can still be the previous day's (``due``
where today it is ``overdue_L1``): statuses are not shifted at read time, because a dose that
becomes givable today must first go through today's gates (CA-05 calcium age, …), which only the
rules evaluate.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scheduling.models import OPEN_STATUSES, PlanItem, PlanState
from scheduling.rules.flags import message as flag_message
from scheduling.rules.unblock import unblock_hint

if TYPE_CHECKING:
    from scheduling.rules.engine import Plan
    from scheduling.services import SyncResult

# --- write: kept in step by every re-plan ----------------------------------------------------


def plan_states_sync(plans: Mapping[int, Plan], *, result: SyncResult, now: datetime) -> int:
    """Store each patient's patient-level flags; give a new revision to every changed plan."""
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
    return len(rows)


# --- read: the plan endpoints -----------------------------------------------------------------


def plan_state_of(patient_id: int) -> PlanState | None:
    return PlanState.objects.filter(patient_id=patient_id).only("revision", "flags").first()


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
    "days_late",
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


def open_items(patient_id: int, *, lang: str) -> list[dict[str, Any]]:
    """The patient's open plan items, soonest first, as ``PlanItemSerializer`` renders them."""
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
        days_late,
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
                "days_late": days_late,
                "escalation": dict(escalation),
                "blocked_by": [str(code) for code in blocked_by],
                "blocks": blocks_out(blocked_by, flags, lang),
                "flags": [flag_out(f, lang) for f in flags if isinstance(f, dict)],
                "version": version,
            }
        )
    return out
