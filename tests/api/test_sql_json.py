"""The JSON text PostgreSQL writes for the polled reads (``backend.conditional.json_value_sql``,
``instant_json_sql`` in the time zone a statement sets with ``session_zone_sql``) is the text
DRF's renderer writes for the same values."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import DataError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from backend.conditional import instant_json_sql, json_text, json_value_sql, session_zone_sql

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ZONES = ["Europe/Paris", "UTC", "America/St_Johns", "Asia/Kathmandu", "America/New_York", "Atlantic/Azores"]


def _drf_instant(value: datetime, zone: str) -> str:
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        return json_text(serializers.DateTimeField().to_representation(value))


def _sql_instants(pairs: list[tuple[datetime, str]]) -> list[str]:
    """Each instant written by a statement that sets the session's time zone to its zone, as the
    booklet's does."""
    set_zone, put_back = session_zone_sql("%s::text")
    instants = f"(SELECT array_agg({instant_json_sql('v.ts')} ORDER BY v.n) FROM unnest(%s::timestamptz[]) WITH ORDINALITY AS v(ts, n))"  # noqa: E501, S608
    sql = f"SELECT {instants}, {put_back} FROM (SELECT {set_zone}) p"  # noqa: S608  # the code's own SQL, values as parameters
    out = {}
    with connection.cursor() as cursor:
        for zone in {zone for _, zone in pairs}:
            mine = [(n, ts) for n, (ts, other) in enumerate(pairs) if other == zone]
            cursor.execute(sql, [[ts for _, ts in mine], zone])
            texts, back = cursor.fetchone()
            assert back == "UTC"  # the connection's, put back by the statement's last column
            out.update(zip([n for n, _ in mine], texts, strict=True))
    return [out[n] for n in range(len(pairs))]


def _session_zone() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW TimeZone")
        return str(cursor.fetchone()[0])


@pytest.mark.parametrize("zone", ZONES)
def test_instants_are_written_as_drf_writes_them(zone: str) -> None:
    base = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # Paris and the Azores change to summer time that night
    instants = [
        base + timedelta(minutes=30 * step, microseconds=micro)
        for step in range(8)
        for micro in (0, 1, 120000, 395459, 100000, 999999)
    ]
    instants += [datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, 59, 10, tzinfo=UTC)]
    assert _sql_instants([(ts, zone) for ts in instants]) == [_drf_instant(ts, zone) for ts in instants]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
            st.sampled_from(ZONES),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_any_instant_in_these_zones_is_written_as_drf_writes_it(pairs: list[tuple[datetime, str]]) -> None:
    assert _sql_instants(pairs) == [_drf_instant(ts, zone) for ts, zone in pairs]


def test_a_null_instant_is_null() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {json_value_sql(instant_json_sql('%s::timestamptz'), 'json')}", [None])
        assert cursor.fetchone()[0] == "null"


def test_the_statement_leaves_the_session_time_zone_as_it_found_it() -> None:
    """Inside a transaction (here, the test's) the zone a statement sets would last until its end:
    the statement's last column puts it back; a statement that fails is undone with its savepoint."""
    assert _session_zone() == "UTC"
    _sql_instants([(datetime(2026, 7, 1, tzinfo=UTC), "Asia/Kathmandu")])
    assert _session_zone() == "UTC"
    set_zone, put_back = session_zone_sql("%s::text")
    failing = f"SELECT 1 / 0, {put_back} FROM (SELECT {set_zone}) p"  # noqa: S608  # the code's own SQL
    with pytest.raises(DataError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(failing, ["America/St_Johns"])
    assert _session_zone() == "UTC"


@pytest.mark.parametrize(
    ("kind", "cast", "value"),
    [
        ("uuid", "uuid", uuid.UUID("82ac4756-515f-49a2-b4ef-c1b23b5853fa")),
        ("uuid", "uuid", None),
        ("int", "integer", -42),
        ("int", "bigint", 2**40),
        ("bool", "boolean", True),
        ("bool", "boolean", False),
        ("bool", "boolean", None),
        ("string", "numeric", "50000.0"),
        ("any", "text", 'a "quoted" \\ back\\slash\n\t\r\b\f\x01\x1f é ✓ 🦴'),
        ("any", "varchar", ""),
        ("any", "text", None),
        ("any", "date", "2026-02-28"),
    ],
)
def test_json_values_are_the_text_drf_writes(kind: str, cast: str, value: Any) -> None:
    expected = json_text(None if value is None else str(value) if kind in ("uuid", "string") else value)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {json_value_sql(f'%s::{cast}', kind)}", [value])
        assert cursor.fetchone()[0] == expected


@pytest.mark.parametrize(
    "value",
    [
        "denosumab",  # a plain value: between quotes, no to_json
        "",
        None,
        "OP-04 (a rule), 2/3; 1.5 + x: y",  # plain, though not listed: through to_json
        'a "quoted" \\ back\\slash\n\t\x01 é ✓ 🦴',  # not plain: escaped by to_json
        "denosumab\n",
    ],
)
@pytest.mark.parametrize("cast", ["text", "varchar(40)"])
def test_text_values_are_the_text_drf_writes(value: str | None, cast: str) -> None:
    sql = json_value_sql("x.v", "text", plain=["denosumab", "zoledronic_acid", "OP-04"])
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql} FROM (SELECT %s::{cast} AS v) x", [value])  # noqa: S608  # a parameter
        assert cursor.fetchone()[0] == json_text(value)


@pytest.mark.parametrize("word", ['a"b', "a'b", "a\\b", "é", "a\nb"])
def test_a_plain_value_that_would_need_escaping_is_refused(word: str) -> None:
    with pytest.raises(ValueError, match="not plain text"):
        json_value_sql("t.x", "text", plain=["ok", word])
