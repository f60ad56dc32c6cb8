"""Send times: the recipient's own time zone across daylight-saving changes, quiet hours (TIME-04)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from notifications import policy

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def z(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "tz", "expected"),
    [
        # TIME-04: 09:00 Europe/Paris is 08:00Z in winter (CET) and 07:00Z in summer (CEST).
        ("2026-03-28", PARIS, "2026-03-28T08:00"),
        ("2026-03-29", PARIS, "2026-03-29T07:00"),  # the change happens at 02:00 that night
        ("2026-03-30", PARIS, "2026-03-30T07:00"),
        ("2026-10-24", PARIS, "2026-10-24T07:00"),
        ("2026-10-25", PARIS, "2026-10-25T08:00"),
        ("2028-03-26", PARIS, "2028-03-26T07:00"),
        # A patient in New York: 09:00 EST = 14:00Z, 09:00 EDT (from 2026-03-08) = 13:00Z.
        ("2026-03-07", NEW_YORK, "2026-03-07T14:00"),
        ("2026-03-08", NEW_YORK, "2026-03-08T13:00"),
        ("2026-11-01", NEW_YORK, "2026-11-01T14:00"),
    ],
)
def test_nine_local_on_the_date_across_dst_TIME_04(day: str, tz: ZoneInfo, expected: str) -> None:
    assert policy.local_send_at(date.fromisoformat(day), tz=tz, at=time(9, 0)) == z(expected)


def test_offsets_are_calendar_days_not_86400_seconds_TIME_03() -> None:
    # Due on 2026-04-07 (CEST), reminder 14 days before on 2026-03-24 (CET): both at 09:00 local.
    due = policy.local_send_at(date(2026, 4, 7), tz=PARIS, at=time(9))
    before = policy.local_send_at(date(2026, 3, 24), tz=PARIS, at=time(9))
    assert (due - before).total_seconds() == 14 * 86_400 - 3600


def test_wall_time_inside_the_spring_gap_moves_just_after_it() -> None:
    assert policy.local_send_at(date(2026, 3, 29), tz=PARIS, at=time(2, 30)) == z("2026-03-29T01:30")  # 03:30 CEST


@pytest.mark.parametrize(
    ("at", "start", "end", "expected"),
    [
        (time(9), time(22), time(7), "2026-02-10T08:00"),  # outside quiet hours: unchanged
        (time(6, 30), time(22), time(7), "2026-02-10T06:00"),  # wraps midnight: pushed to 07:00 local
        (time(23), time(22), time(7), "2026-02-11T06:00"),  # after the start: pushed to tomorrow 07:00
        (time(13), time(12), time(14), "2026-02-10T13:00"),  # a lunchtime silence: pushed to 14:00
        (time(12), time(12), time(14), "2026-02-10T13:00"),
        (time(14), time(12), time(14), "2026-02-10T13:00"),  # the end is not quiet
    ],
)
def test_quiet_hours_push_the_send_time_out(at: time, start: time, end: time, expected: str) -> None:
    got = policy.local_send_at(date(2026, 2, 10), tz=PARIS, at=at, quiet_start=start, quiet_end=end)
    assert got == z(expected)


def test_not_before_then_quiet_hours() -> None:
    # An escalation opened at 23:30 local: not before then, then out of the 22:00-07:00 silence.
    opened = datetime(2026, 2, 10, 23, 30, tzinfo=PARIS)
    got = policy.local_send_at(
        date(2026, 2, 10), tz=PARIS, at=time(9), quiet_start=time(22), quiet_end=time(7), not_before=opened
    )
    assert got == z("2026-02-11T06:00")


def test_reminder_policy_is_data() -> None:
    # Protocol offsets for dose items; the kind table for the rest.
    assert policy.offsets_for("injection", (0, -14, -3)) == (-14, -3, 0)
    assert policy.offsets_for("injection", None) == (-14, -3, 0)
    assert policy.offsets_for("vitamin_d_dose", (0,)) == (0,)
    assert policy.offsets_for("calcium_check", (-28, -14, -3, 0)) == (-2, 0)
    assert policy.offsets_for("dental_visit", None) == (-14,)


def test_idempotency_key_is_stable_and_distinct() -> None:
    a = policy.idempotency_key("reminder", 1, "inj:1", 1, -3, "email", "patient:1")
    assert a == policy.idempotency_key("reminder", 1, "inj:1", 1, -3, "email", "patient:1")
    assert len(a) == 64
    assert a != policy.idempotency_key("reminder", 1, "inj:1", 2, -3, "email", "patient:1")
