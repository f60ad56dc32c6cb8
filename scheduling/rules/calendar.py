"""Calendar arithmetic on local dates (rules TIME-01 … TIME-06).

Every clinical rule works on calendar dates in the patient's time zone. Month offsets clamp to the
last day of the target month and are always computed from an anchor, never chained (TIME-02).
Day offsets are calendar days (TIME-03), never multiples of 86 400 s on an instant.
"""

from __future__ import annotations

import calendar as _stdcal
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "add_days",
    "add_months",
    "age_on",
    "days_between",
    "local_date",
    "more_than_months",
    "more_than_weeks",
    "notification_instant",
    "zone",
]


def zone(tz: str | ZoneInfo) -> ZoneInfo:
    """A ``ZoneInfo`` for a name (cached by the standard library)."""
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def local_date(instant: datetime, tz: str | ZoneInfo) -> date:
    """TIME-01: the local calendar date of an aware instant in ``tz``.

    ``2026-03-19T23:30:00Z`` is 00:30 CET on 2026-03-20, so the local date is 2026-03-20.
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("local_date needs an aware datetime (TIME-01)")
    return instant.astimezone(zone(tz)).date()


@lru_cache(maxsize=65536)  # pure; a plan asks for the same few dates many times
def add_months(anchor: date, months: int) -> date:
    """TIME-02: ``anchor`` plus ``months`` calendar months, clamped to the end of the target month.

    Aug 31 + 6 m = Feb 28 (Feb 29 in leap years); Nov 30 + 3 m = 2028-02-29; Jan 31 + 1 m = Feb 28.
    Projections must use ``add_months(anchor, k * n)``, never a clamped result as a new anchor.
    """
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    last_day = _stdcal.monthrange(year, month)[1]
    return date(year, month, min(anchor.day, last_day))


def add_days(day: date, days: int) -> date:
    """TIME-03: pure calendar-day arithmetic on a local date (1 week = 7 days)."""
    return day + timedelta(days=days)


def days_between(start: date, end: date) -> int:
    """Calendar days from ``start`` to ``end`` (negative when ``end`` is earlier)."""
    return (end - start).days


def age_on(birth_date: date, on: date, *, leap_birthday: str = "feb28") -> int:
    """TIME-05: completed years on the local date ``on``.

    A 29 February birthday is reached on 28 February in common years (the TIME-02 clamp, P5);
    ``leap_birthday="mar1"`` selects the civil alternative.
    """
    years = on.year - birth_date.year
    if birth_date.month == 2 and birth_date.day == 29 and not _stdcal.isleap(on.year):
        birthday = date(on.year, 2, 28) if leap_birthday == "feb28" else date(on.year, 3, 1)
    else:
        birthday = date(on.year, birth_date.month, birth_date.day)
    return years if on >= birthday else years - 1


def notification_instant(day: date, tz: str | ZoneInfo, hour: int = 9) -> datetime:
    """TIME-04: the aware UTC instant of ``hour``:00 local time on ``day``.

    09:00 Europe/Paris is 08:00Z in winter (CET) and 07:00Z in summer (CEST), whatever the DST
    change in between. A local hour skipped by the spring change is resolved by ``zoneinfo``
    (fold=0), which cannot happen for 09:00 in Europe/Paris.
    """
    local = datetime.combine(day, time(hour=hour), tzinfo=zone(tz))
    return local.astimezone(UTC)


def more_than_weeks(start: date, on: date, weeks: int) -> bool:
    """TIME-06: "persisting > N weeks" after ``start`` holds from day 7N + 1 (8 weeks: day 57)."""
    return on >= add_days(start, 7 * weeks + 1)


def more_than_months(anchor: date, on: date, months: int) -> bool:
    """TIME-06: "more than N months" after ``anchor`` holds from add_months(anchor, N) + 1 day."""
    return on >= add_days(add_months(anchor, months), 1)
