"""The reminder policy as data, and the arithmetic of a send time (no ORM, no clock).

Offsets are calendar days relative to the item's due date (TIME-03). Injections, consolidation
infusions and vitamin D doses take the offsets their protocol carries
(``scheduling.rules.protocols.Protocol.notification_offsets``); the other kinds take this table.
A send time is a wall-clock time on a local date in the recipient's own time zone (TIME-04),
converted to UTC with zoneinfo, so it is right on either side of a daylight-saving change; it is
then pushed out of the recipient's quiet hours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "ESCALATION_POLICY",
    "KIND_OFFSETS",
    "PROTOCOL_OFFSET_KINDS",
    "EscalationPolicy",
    "idempotency_key",
    "in_quiet_hours",
    "local_send_at",
    "offsets_for",
    "out_of_quiet_hours",
]

# Kinds whose reminders follow the protocol's own offsets (injection -14/-3/0 for denosumab 60 mg …).
PROTOCOL_OFFSET_KINDS = frozenset({"injection", "consolidation", "vitamin_d_dose"})

KIND_OFFSETS: Mapping[str, tuple[int, ...]] = {
    "injection": (-14, -3, 0),
    "consolidation": (-14, -3, 0),
    "vitamin_d_dose": (0,),
    "calcium_check": (-2, 0),
    "vitamin_d_test": (-2, 0),
    "ctx_check": (-2, 0),
    "dental_visit": (-14,),
    "reevaluation": (-14,),
}


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Staff messages of an open escalation repeat every ``repeat_days`` until acknowledged."""

    repeat_days: int = 2
    repeats: int = 3


ESCALATION_POLICY: Mapping[str, EscalationPolicy] = {
    # W: a nurse reminder every 3 days; H and C: every 2 days, then every day at C.
    "W": EscalationPolicy(repeat_days=3, repeats=2),
    "H": EscalationPolicy(repeat_days=2, repeats=3),
    "C": EscalationPolicy(repeat_days=1, repeats=5),
}


def offsets_for(kind: str, protocol_offsets: tuple[int, ...] | None) -> tuple[int, ...]:
    """The reminder offsets (days from due) of a plan item of ``kind``."""
    if kind in PROTOCOL_OFFSET_KINDS and protocol_offsets:
        return tuple(sorted(set(protocol_offsets)))
    return KIND_OFFSETS.get(kind, ())


def idempotency_key(*parts: object) -> str:
    """A stable 64-hex key of the message's identity (sha256 of its parts)."""
    raw = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _aware(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``at`` on ``day`` in ``tz``, in UTC. zoneinfo's fold=0 reads a wall time skipped by the
    spring-forward gap with the earlier offset, which lands it just after the gap (02:30 → 03:30),
    and an ambiguous autumn time as its first occurrence."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def in_quiet_hours(at: time, quiet_start: time | None, quiet_end: time | None) -> bool:
    if quiet_start is None or quiet_end is None or quiet_start == quiet_end:
        return False
    if quiet_start < quiet_end:
        return quiet_start <= at < quiet_end
    return at >= quiet_start or at < quiet_end  # wraps midnight, e.g. 22:00 … 07:00


def out_of_quiet_hours(instant: datetime, tz: ZoneInfo, quiet_start: time | None, quiet_end: time | None) -> datetime:
    """``instant`` if it is outside quiet hours, else the end of those quiet hours (UTC)."""
    if quiet_start is None or quiet_end is None or quiet_start == quiet_end:
        return instant.astimezone(UTC)  # no quiet hours (``in_quiet_hours`` is False)
    local = instant.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    if not in_quiet_hours(wall, quiet_start, quiet_end):
        return instant.astimezone(UTC)
    end_day = local.date()
    if quiet_start > quiet_end and wall >= quiet_start:
        end_day = end_day + timedelta(days=1)
    return _aware(end_day, quiet_end, tz)


def local_send_at(
    day: date,
    *,
    tz: ZoneInfo,
    at: time,
    quiet_start: time | None = None,
    quiet_end: time | None = None,
    not_before: datetime | None = None,
) -> datetime:
    """TIME-04: ``at`` local on ``day`` in ``tz``, no earlier than ``not_before``, out of quiet hours."""
    if not_before is None:
        return _send_at(day, tz, at, quiet_start, quiet_end)
    instant = _aware(day, at, tz)
    if not_before is not None and instant < not_before:
        instant = not_before.astimezone(UTC)
    return out_of_quiet_hours(instant, tz, quiet_start, quiet_end)


@lru_cache(maxsize=65536)
def _send_at(day: date, tz: ZoneInfo, at: time, quiet_start: time | None, quiet_end: time | None) -> datetime:
    """``local_send_at`` without ``not_before``, pure in its arguments: a re-plan asks it for every
    reminder of every item, and a batch's patients share zones, hours and days."""
    return out_of_quiet_hours(_aware(day, at, tz), tz, quiet_start, quiet_end)
