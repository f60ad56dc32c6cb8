"""``backend.db``: Django's PostgreSQL backend with psycopg's C timestamp parser gives the values
Django's own loader gives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from psycopg.pq import Format
from psycopg.types.datetime import TimestamptzLoader

from backend.db import base
from tests.factories import PatientFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

# Microseconds, both DST changes in Paris, a leap day, the far past and future PostgreSQL keeps.
TIMESTAMPS = [
    "2026-11-22 09:00:00+00",
    "2026-03-29 00:59:59.999999+00",
    "2026-03-29 01:00:00+00",
    "2026-10-25 00:30:00.5+00",
    "2028-02-29 23:59:59.000001+00",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "2026-11-22 10:00:00+01",  # another offset: the same instant as 09:00Z
]


def _read(loader: type | None) -> list[Any]:
    with connection.cursor() as cursor:
        if loader is not None:
            cursor.adapters.register_loader("timestamptz", loader)
        cursor.execute(
            "SELECT unnest(%s::timestamptz[]), NULL::timestamptz", [[datetime.fromisoformat(t) for t in TIMESTAMPS]]
        )
        return cursor.fetchall()


def test_the_connection_reads_timestamps_with_the_fast_loader() -> None:
    with connection.cursor() as cursor:
        loader = cursor.adapters.get_loader(base.TIMESTAMPTZ_OID, Format.TEXT)
    assert issubclass(loader, base.FastTzLoader)
    assert loader.timezone is connection.timezone
    assert base._OPTIMISED is not TimestamptzLoader  # psycopg[binary] is installed: parsing is in C


def test_values_are_those_of_djangos_loader() -> None:
    class DjangoLoader(BaseTzLoader):  # what Django registers: the pure-Python parser
        timezone = connection.timezone

    fast, django = _read(None), _read(DjangoLoader)
    assert fast == django
    assert [(type(a), a.tzinfo) for a, _none in fast] == [(datetime, UTC)] * len(TIMESTAMPS)
    assert fast[-1][0] == datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    assert all(none is None for _value, none in fast)


def test_model_timestamps_round_trip() -> None:
    patient = PatientFactory()
    stored = type(patient).objects.values_list("created_at", "updated_at").get(pk=patient.pk)
    assert stored == (patient.created_at, patient.updated_at)
    assert stored[0].tzinfo is UTC
