"""TIME-01 … TIME-06: local dates, month clamp, calendar days, 09:00 local across DST, ages."""

from __future__ import annotations

import calendar as stdcal
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduling.rules.calendar import (
    add_days,
    add_months,
    age_on,
    local_date,
    more_than_months,
    more_than_weeks,
    notification_instant,
)

D = date.fromisoformat
PARIS = "Europe/Paris"


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        pytest.param("2026-03-19T23:30:00+00:00", "2026-03-20", id="TIME-01-table-example"),
        pytest.param("2026-03-19T22:59:59+00:00", "2026-03-19", id="TIME-01-before-local-midnight"),
        pytest.param("2026-07-01T22:00:00+00:00", "2026-07-02", id="TIME-01-summer-offset-2h"),
        pytest.param("2026-07-01T21:59:00+00:00", "2026-07-01", id="TIME-01-summer-before-midnight"),
        pytest.param("2026-10-24T22:30:00+00:00", "2026-10-25", id="TIME-01-dst-end-night"),
    ],
)
def test_time_01_local_date(instant: str, expected: str) -> None:
    assert local_date(datetime.fromisoformat(instant), PARIS) == D(expected)


def test_time_01_naive_instant_refused() -> None:
    with pytest.raises(ValueError, match="TIME-01"):
        local_date(datetime(2026, 3, 19, 23, 30), PARIS)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        pytest.param("2026-08-31", 6, "2027-02-28", id="TIME-02-aug31-common-year"),
        pytest.param("2027-08-31", 6, "2028-02-29", id="TIME-02-aug31-leap-year"),
        pytest.param("2027-11-30", 3, "2028-02-29", id="TIME-02-nov30-plus-3"),
        pytest.param("2026-01-31", 1, "2026-02-28", id="TIME-02-jan31-plus-1"),
        pytest.param("2028-02-29", 6, "2028-08-29", id="TIME-02-clamped-result-not-chained"),
        pytest.param("2026-01-15", 6, "2026-07-15", id="TIME-02-plain"),
        pytest.param("2026-03-31", -1, "2026-02-28", id="TIME-02-negative"),
        pytest.param("2026-12-31", 12, "2027-12-31", id="TIME-02-year"),
        pytest.param("2026-05-31", 24, "2028-05-31", id="TIME-02-24-months"),
    ],
)
def test_time_02_add_months(start: str, months: int, expected: str) -> None:
    assert add_months(D(start), months) == D(expected)


def test_time_02_projections_are_anchored_not_chained() -> None:
    anchor = D("2026-08-31")
    anchored = [add_months(anchor, 6 * k) for k in range(1, 5)]
    assert anchored == [D("2027-02-28"), D("2027-08-31"), D("2028-02-29"), D("2028-08-31")]
    chained = [anchor]
    for _ in range(4):
        chained.append(add_months(chained[-1], 6))
    assert chained[2] == D("2027-08-28")  # what chaining would do: the 31st is lost


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        pytest.param("2026-03-10", 28, "2026-04-07", id="TIME-03-table-example-across-dst"),
        pytest.param("2026-10-20", 7, "2026-10-27", id="TIME-03-week-across-dst-end"),
        pytest.param("2028-02-28", 1, "2028-02-29", id="TIME-03-leap-day"),
        pytest.param("2026-12-31", 1, "2027-01-01", id="TIME-03-year-end"),
    ],
)
def test_time_03_add_days(start: str, days: int, expected: str) -> None:
    assert add_days(D(start), days) == D(expected)


def test_time_03_instant_arithmetic_is_the_failure_the_table_describes() -> None:
    start = datetime(2026, 3, 10, 23, 30, tzinfo=timezone(timedelta(hours=1)))
    wrong = local_date(start + timedelta(seconds=28 * 86_400), PARIS)
    assert wrong == D("2026-04-08")
    assert add_days(local_date(start, PARIS), 28) == D("2026-04-07")


@pytest.mark.parametrize(
    ("day", "expected_utc"),
    [
        pytest.param("2026-03-28", "2026-03-28T08:00:00+00:00", id="TIME-04-day-before-spring-change"),
        pytest.param("2026-03-29", "2026-03-29T07:00:00+00:00", id="TIME-04-spring-change-day"),
        pytest.param("2026-10-24", "2026-10-24T07:00:00+00:00", id="TIME-04-day-before-autumn-change"),
        pytest.param("2026-10-25", "2026-10-25T08:00:00+00:00", id="TIME-04-autumn-change-day"),
        pytest.param("2027-03-28", "2027-03-28T07:00:00+00:00", id="TIME-04-2027-spring"),
        pytest.param("2028-10-29", "2028-10-29T08:00:00+00:00", id="TIME-04-2028-autumn"),
        pytest.param("2026-01-15", "2026-01-15T08:00:00+00:00", id="TIME-04-winter-08Z"),
        pytest.param("2026-07-15", "2026-07-15T07:00:00+00:00", id="TIME-04-summer-07Z"),
    ],
)
def test_time_04_notification_at_nine_local(day: str, expected_utc: str) -> None:
    instant = notification_instant(D(day), PARIS, 9)
    assert instant == datetime.fromisoformat(expected_utc)
    assert instant.tzinfo == UTC


@pytest.mark.parametrize(
    ("birth", "on", "age", "rule"),
    [
        pytest.param("1952-02-29", "2027-02-28", 75, "feb28", id="TIME-05-leap-birthday-reached-feb28"),
        pytest.param("1952-02-29", "2027-02-27", 74, "feb28", id="TIME-05-day-before"),
        pytest.param("1952-02-29", "2028-02-28", 75, "feb28", id="TIME-05-leap-year-waits-feb29"),
        pytest.param("1952-02-29", "2028-02-29", 76, "feb28", id="TIME-05-leap-year-feb29"),
        pytest.param("1952-02-29", "2027-02-28", 74, "mar1", id="TIME-05-mar1-alternative"),
        pytest.param("1951-06-15", "2026-06-15", 75, "feb28", id="TIME-05-birthday"),
        pytest.param("1951-06-15", "2026-06-14", 74, "feb28", id="TIME-05-eve"),
    ],
)
def test_time_05_age(birth: str, on: str, age: int, rule: str) -> None:
    assert age_on(D(birth), D(on), leap_birthday=rule) == age


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        pytest.param("2026-02-26", False, id="TIME-06-day-56-not-more-than-8-weeks"),
        pytest.param("2026-02-27", True, id="TIME-06-day-57"),
    ],
)
def test_time_06_more_than_eight_weeks(on: str, expected: bool) -> None:
    assert more_than_weeks(D("2026-01-01"), D(on), 8) is expected


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        pytest.param("2026-07-15", False, id="TIME-06-exactly-6-months"),
        pytest.param("2026-07-16", True, id="TIME-06-D-plus-1"),
    ],
)
def test_time_06_more_than_six_months(on: str, expected: bool) -> None:
    assert more_than_months(D("2026-01-15"), D(on), 6) is expected


dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))


@given(dates, st.integers(min_value=-240, max_value=240))
def test_time_02_property_clamp(start: date, months: int) -> None:
    result = add_months(start, months)
    assert result.day <= start.day
    assert (result.year * 12 + result.month) - (start.year * 12 + start.month) == months
    if result.day < start.day:  # clamped: last day of the target month
        assert result.day == stdcal.monthrange(result.year, result.month)[1]
    else:
        assert result.day == start.day


@given(dates, st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=12))
def test_time_02_property_never_chains(anchor: date, k: int, n: int) -> None:
    projected = add_months(anchor, k * n)
    assert projected.day == min(anchor.day, stdcal.monthrange(projected.year, projected.month)[1])


@given(dates, st.integers(min_value=-3000, max_value=3000))
def test_time_03_property_calendar_days(start: date, days: int) -> None:
    assert (add_days(start, days) - start).days == days
    assert add_days(add_days(start, days), -days) == start


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)))
def test_time_04_property_nine_local(day: date) -> None:
    from zoneinfo import ZoneInfo

    local = notification_instant(day, PARIS, 9).astimezone(ZoneInfo(PARIS))
    assert (local.date(), local.hour, local.minute) == (day, 9, 0)
