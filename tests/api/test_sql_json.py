"""The JSON text PostgreSQL writes for the polled reads (``backend.conditional.json_value_sql``,
``carnet_isoformat_json``) is the text DRF's renderer writes for the same values."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from backend.conditional import json_text, json_value_sql

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ZONES = ["Europe/Paris", "UTC", "America/St_Johns", "Asia/Kathmandu", "America/New_York", "Atlantic/Azores"]


def _drf_instant(value: datetime, zone: str) -> str:
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        return json_text(serializers.DateTimeField().to_representation(value))


def _sql_instants(pairs: list[tuple[datetime, str]]) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT carnet_isoformat_json(ts, zone) FROM unnest(%s::timestamptz[], %s::text[]) WITH ORDINALITY"
            " AS v(ts, zone, n) ORDER BY n",
            [[ts for ts, _ in pairs], [zone for _, zone in pairs]],
        )
        return [row[0] for row in cursor.fetchall()]


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
        cursor.execute(f"SELECT {json_value_sql('carnet_isoformat_json(NULL, %s)', 'json')}", ["Europe/Paris"])
        assert cursor.fetchone()[0] == "null"


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
