"""Plan items and the status ladder shared by every protocol (OP-04, ONC-02, ZOL-08, CONS-05).

Status decision: an administration item whose status would be ``window_open`` or ``due`` and
that a blocking flag applies to gets status ``blocked``. An overdue item keeps ``overdue_Lk`` (the
ladder must stay visible to drive alerts) and lists the blocks in ``blocked_by``. ``level``,
``days_late`` and the escalation dates are always kept. ``scheduled`` and ``reminder`` items are
never gated (gates are evaluated only when the dose could be given today).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

from .calendar import add_days
from .flags import Flag
from .labs import LabSummary
from .protocols import EscalationLevel

__all__ = [
    "ACTIONABLE",
    "LATE",
    "Plan",
    "PlanItem",
    "Timing",
    "days_late_on",
    "item_at",
    "ladder_status",
    "make_item",
    "timing_of",
]

ACTIONABLE = ("window_open", "due")  # plus every overdue_Lk
# The statuses an item can be days late in: ``ladder_status`` gives days late only from the due
# date on (``due``, ``overdue_Lk``), and the engine turns a gated ``due`` into ``blocked``.
LATE = ("due", "overdue_L1", "overdue_L2", "overdue_L3", "overdue_L4", "blocked")


def days_late_on(status: str, due: date, today: date) -> int:
    """An item's days late on ``today``, from its status and due date: what ``ladder_status`` gives.

    Late items are days late by the calendar alone, so this is not stored: readers derive it
    with their own (the patient's local) date, as the plan's ETag names it, and the nightly pass
    writes nothing for a plan whose only change is that its late items are a day later. Stored
    with the status of the item's last re-plan; an item of another status (closed ones too) is
    not late. ``scheduling.expressions.DaysLate`` says the same in SQL (tested against this).
    """
    if status not in LATE:
        return 0
    late = (today - due).days
    return late if late > 0 else 0


@dataclass(frozen=True, slots=True)
class Timing:
    reminder_days: int
    window_before_days: int
    window_after_days: int
    window_status: bool
    ladder: tuple[EscalationLevel, ...]
    # The memoised ladder functions below hash a Timing once per item: computed once here,
    # rather than walking the ladder's levels on every call.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = (self.reminder_days, self.window_before_days, self.window_after_days, self.window_status, self.ladder)
        object.__setattr__(self, "_hash", hash(values))

    def __hash__(self) -> int:
        return self._hash


@lru_cache(maxsize=1024)
def timing_of(
    reminder_days: int,
    window_before_days: int,
    window_after_days: int,
    window_status: bool,
    ladder: tuple[EscalationLevel, ...],
) -> Timing:
    """The one ``Timing`` of these values: the memoised ladder functions then find their key by
    identity, without comparing five fields per item."""
    return Timing(reminder_days, window_before_days, window_after_days, window_status, ladder)


# Not frozen, unlike the facts: as plain Python, a frozen dataclass pays one ``object.__setattr__``
# per field on construction (~6 µs for these 22 fields, a quarter of the engine's time at ~30
# items per plan). Treat items as values all the same: change one with ``dataclasses.replace``.
# The ``__init__`` is written out (``init=False``) so that mypyc compiles it (see facts.py).
@dataclass(slots=True, init=False)
class PlanItem:
    key: str
    kind: str
    protocol: str | None
    course_key: str | None
    ordinal: int | None
    dose_mg: float | None
    product: str | None
    phase: str | None
    due: date
    window_start: date
    window_end: date
    reminder: date
    status: str
    level: str | None
    escalation: Mapping[str, date]
    rule: str
    blocked_by: tuple[str, ...] = ()
    days_late: int = 0
    severity: str | None = None
    notify: tuple[str, ...] = ()
    notification_offsets: tuple[int, ...] = ()
    until: date | None = None

    def __init__(
        self,
        key: str,
        kind: str,
        protocol: str | None,
        course_key: str | None,
        ordinal: int | None,
        dose_mg: float | None,
        product: str | None,
        phase: str | None,
        due: date,
        window_start: date,
        window_end: date,
        reminder: date,
        status: str,
        level: str | None,
        escalation: Mapping[str, date],
        rule: str,
        blocked_by: tuple[str, ...] = (),
        days_late: int = 0,
        severity: str | None = None,
        notify: tuple[str, ...] = (),
        notification_offsets: tuple[int, ...] = (),
        until: date | None = None,
    ) -> None:
        self.key = key
        self.kind = kind
        self.protocol = protocol
        self.course_key = course_key
        self.ordinal = ordinal
        self.dose_mg = dose_mg
        self.product = product
        self.phase = phase
        self.due = due
        self.window_start = window_start
        self.window_end = window_end
        self.reminder = reminder
        self.status = status
        self.level = level
        self.escalation = escalation
        self.rule = rule
        self.blocked_by = blocked_by
        self.days_late = days_late
        self.severity = severity
        self.notify = notify
        self.notification_offsets = notification_offsets
        self.until = until

    @property
    def actionable(self) -> bool:
        """The dose could be given today: window open, due, overdue (or blocked)."""
        return self.status in ACTIONABLE or self.status.startswith("overdue") or (self.status == "blocked")


@dataclass(frozen=True, slots=True, init=False)
class Plan:
    items: tuple[PlanItem, ...]
    flags: tuple[Flag, ...]
    labs: LabSummary
    notes: tuple[str, ...] = field(default=())

    def __init__(
        self, items: tuple[PlanItem, ...], flags: tuple[Flag, ...], labs: LabSummary, notes: tuple[str, ...] = ()
    ) -> None:
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "labs", labs)
        object.__setattr__(self, "notes", notes)


def ladder_status(today: date, due: date, timing: Timing) -> tuple[str, EscalationLevel | None, int]:
    """(status, current level, days late) of an item on ``today``.

    ``scheduled`` before the reminder, ``reminder`` until the window opens, ``window_open`` until
    D-1 (or ``reminder`` for ladders without a window status: ONC-02, ZOL-08), ``due`` on D,
    then ``overdue_Lk`` for the highest rung whose offset is reached.
    """
    reminder = add_days(due, -timing.reminder_days)
    window_start = add_days(due, -timing.window_before_days)
    if today < due:
        if today < reminder:
            return "scheduled", None, 0
        if today < window_start or not timing.window_status:
            return "reminder", None, 0
        return "window_open", None, 0
    late = (today - due).days
    if late == 0:
        return "due", None, 0
    reached = [lvl for lvl in timing.ladder if late >= lvl.offset_days]
    if not reached:
        return "due", None, late
    level = reached[-1]
    return f"overdue_{level.level}", level, late


def _item_dates(due: date, timing: Timing) -> tuple[date, date, date, tuple[tuple[str, date], ...]]:
    """(window start, window end, reminder, escalation dates) of an item due on ``due`` (TIME-03)."""
    return (
        add_days(due, -timing.window_before_days),
        add_days(due, timing.window_after_days),
        add_days(due, -timing.reminder_days),
        tuple((lvl.level, add_days(due, lvl.offset_days)) for lvl in timing.ladder),
    )


# (status, level, days late, severity, notify, window start, window end, reminder, escalation)
_Shape = tuple[str, str | None, int, str | None, tuple[str, ...], date, date, date, tuple[tuple[str, date], ...]]


@lru_cache(maxsize=65536)  # pure in (today, due, timing); items repeat across a batch
def _item_shape(today: date, due: date, timing: Timing) -> _Shape:
    """What ``make_item`` derives from (today, due, timing), found with one cache look-up per item."""
    status, level, late = ladder_status(today, due, timing)
    window_start, window_end, reminder, escalation = _item_dates(due, timing)
    if level is None:
        return status, None, late, None, (), window_start, window_end, reminder, escalation
    return status, level.level, late, level.severity, level.notify, window_start, window_end, reminder, escalation


def make_item(
    *,
    key: str,
    kind: str,
    due: date,
    today: date,
    timing: Timing,
    rule: str,
    protocol: str | None = None,
    course_key: str | None = None,
    ordinal: int | None = None,
    dose_mg: float | None = None,
    product: str | None = None,
    phase: str | None = None,
    notification_offsets: tuple[int, ...] = (),
    until: date | None = None,
) -> PlanItem:
    """An item due on ``due``, its status, ladder and dates on ``today`` (``item_at`` by keyword)."""
    return item_at(
        key, kind, due, today, timing, rule, protocol, course_key, ordinal, dose_mg, product, phase,
        notification_offsets, until,
    )  # fmt: skip


def item_at(
    key: str,
    kind: str,
    due: date,
    today: date,
    timing: Timing,
    rule: str,
    protocol: str | None,
    course_key: str | None,
    ordinal: int | None,
    dose_mg: float | None,
    product: str | None,
    phase: str | None,
    notification_offsets: tuple[int, ...],
    until: date | None = None,
) -> PlanItem:
    """``make_item`` with positional arguments, for the loops that make an item per month or dose:
    passing fourteen keywords costs more than the rest of the call."""
    status, level, late, severity, notify, window_start, window_end, reminder, escalation = _item_shape(
        today, due, timing
    )
    # Positional, in field order.
    return PlanItem(
        key, kind, protocol, course_key, ordinal, dose_mg, product, phase, due, window_start, window_end,
        reminder, status, level, dict(escalation), rule, (), late, severity, notify, notification_offsets, until,
    )  # fmt: skip
