"""The booklet's ETag from its revision (PostgreSQL: a number kept by triggers on its five tables),
the bodies kept by that revision, and the request's first query standing in for Django's
connection health check."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from tests.api.conftest import World, day_ago

URL = "/api/v1/me/booklet"


@pytest.mark.postgres
def test_booklet_304_costs_one_query_and_renders_nothing(world: World) -> None:
    client = world.client("patient_a")  # authenticated without a query (force_authenticate)
    etag = client.get(URL)["ETag"]
    assert etag.startswith('W/"booklet-')
    with CaptureQueriesContext(connection) as queries:
        assert client.get(URL, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert len(queries.captured_queries) == 1
    assert "json_build_object" not in queries.captured_queries[0]["sql"]


@pytest.mark.postgres
def test_a_kept_body_is_the_body_rendered_now(world: World) -> None:
    from patients.api import BOOKLETS

    client = world.client("patient_a")
    first = client.get(URL)
    with CaptureQueriesContext(connection) as queries:
        again = client.get(URL)  # kept by this process at the same revision: not rendered again
    assert len(queries.captured_queries) == 1
    BOOKLETS.clear()
    fresh = client.get(URL)
    assert first.content == again.content == fresh.content
    assert first["ETag"] == again["ETag"] == fresh["ETag"]


@pytest.mark.postgres
def test_any_write_to_a_booklet_row_changes_the_etag_and_the_body(world: World) -> None:
    """Services, but also writes that bypass them (the admin, a bulk update): the revision is the rows'."""
    from patients import services
    from patients.models import DoseRecord

    client = world.client("patient_a")
    first = client.get(URL)
    with transaction.atomic():  # as the admin or a data fix would, outside patients.services
        DoseRecord.objects.filter(pk=world.dose_a.pk).update(lot_number="LOT-FIXED")
    changed = client.get(URL, HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    assert "LOT-FIXED" in changed.content.decode() and "LOT-FIXED" not in first.content.decode()

    services.dental_event_void(dental=world.dental_a, reason="wrong patient", by=world.users["nurse1"])
    voided = client.get(URL, HTTP_IF_NONE_MATCH=changed["ETag"])
    assert voided.status_code == 200 and voided["ETag"] != changed["ETag"]
    assert any(e["voided"] for e in voided.json()["dental_events"])

    services.dental_event_add(patient=world.patient_a, event="exam", on=day_ago(1), by=world.users["nurse1"])
    added = client.get(URL, HTTP_IF_NONE_MATCH=voided["ETag"])
    assert added.status_code == 200
    assert len(added.json()["dental_events"]) == len(voided.json()["dental_events"]) + 1
    assert client.get(URL, HTTP_IF_NONE_MATCH=added["ETag"]).status_code == 304


def _revisions(*patients: Any) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, booklet_revision FROM patients_patient WHERE id = ANY(%s)", [[p.pk for p in patients]]
        )
        found = dict(cursor.fetchall())
    return [found[p.pk] for p in patients]


def _raw(sql: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.postgres
def test_the_revision_changes_with_every_kind_of_write_to_every_booklet_table(world: World) -> None:
    """Statement triggers (patients/migrations/0003): insert, update, delete, a row moved to another
    patient (both change), a COPY, a TRUNCATE; a statement that touches no row changes nothing."""
    from patients.models import Comedication, DentalEvent, DoseRecord, LabResult, TreatmentCourse

    a, b = world.patient_a, world.patient_b
    rows = {
        TreatmentCourse: world.course_a,
        DoseRecord: world.dose_a,
        LabResult: world.lab_a,
        DentalEvent: world.dental_a,
        Comedication: world.comed_a,
    }
    for model, row in rows.items():
        table = model._meta.db_table
        before_a, before_b = _revisions(a, b)
        _raw(f"UPDATE {table} SET void_reason = void_reason WHERE id = %s", [row.pk])  # noqa: S608
        after_a, after_b = _revisions(a, b)
        assert after_a != before_a and after_b == before_b, table
        _raw(f"UPDATE {table} SET void_reason = '' WHERE id = -1", [])  # noqa: S608  # no row
        assert _revisions(a, b) == [after_a, after_b], table

    # a row moved to another patient: both booklets changed
    before_a, before_b = _revisions(a, b)
    _raw("UPDATE patients_comedication SET patient_id = %s WHERE id = %s", [b.pk, world.comed_a.pk])
    after_a, after_b = _revisions(a, b)
    assert after_a != before_a and after_b != before_b

    before_b = after_b
    _raw("DELETE FROM patients_comedication WHERE id = %s", [world.comed_a.pk])
    assert _revisions(b)[0] != before_b

    before_a = _revisions(a)[0]
    columns = "patient_id, event, date, dentist, notes, void_reason, recorded_at, public_id"
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY patients_dentalevent ({columns}) FROM STDIN") as copy:
        copy.write_row([a.pk, "exam", day_ago(3), "", "", "", world.dental_a.recorded_at, uuid.uuid4()])  # load.py
    assert _revisions(a)[0] != before_a

    before_a, before_b = _revisions(a, b)
    _raw("SET CONSTRAINTS ALL IMMEDIATE", [])  # Django's foreign keys are deferred: none may be pending
    _raw("TRUNCATE patients_comedication", [])
    after_a, after_b = _revisions(a, b)
    assert after_a != before_a and after_b != before_b


@pytest.mark.postgres
def test_a_revision_given_in_a_rolled_back_transaction_is_never_given_again(world: World) -> None:
    """From a sequence: a body rendered inside a transaction that rolled back cannot be taken
    for a later, different booklet at the same revision."""
    from patients.models import DoseRecord

    before = _revisions(world.patient_a)[0]
    with pytest.raises(RuntimeError), transaction.atomic():
        DoseRecord.objects.filter(pk=world.dose_a.pk).update(lot_number="ROLLED-BACK")
        rolled_back = _revisions(world.patient_a)[0]
        raise RuntimeError
    assert _revisions(world.patient_a)[0] == before
    DoseRecord.objects.filter(pk=world.dose_a.pk).update(lot_number="KEPT")
    assert _revisions(world.patient_a)[0] not in (before, rolled_back)


@pytest.mark.postgres
def test_saving_the_patient_leaves_the_revision_to_the_triggers(world: World) -> None:
    """Not a model field: ``Patient.save()`` of an instance read before a booklet write must not
    write back the revision it read."""
    from patients.models import DoseRecord, Patient

    stale = Patient.objects.get(pk=world.patient_a.pk)
    DoseRecord.objects.filter(pk=world.dose_a.pk).update(lot_number="LOT-2")
    changed = _revisions(world.patient_a)[0]
    stale.save()
    assert _revisions(world.patient_a)[0] == changed


@pytest.mark.postgres
def test_booklet_etags_differ_between_patients_and_time_zones(world: World) -> None:
    from django.utils import timezone

    from patients.serializers import booklet_etag

    a, b = booklet_etag(world.patient_a), booklet_etag(world.patient_b)
    assert a and b and a != b
    with timezone.override("America/New_York"):
        assert booklet_etag(world.patient_a) != a


def test_body_cache_drops_the_least_recently_used() -> None:
    from backend.conditional import BodyCache

    kept = BodyCache(max_bytes=10)
    kept.put("a", b"aaaa")
    kept.put("b", b"bbbb")
    assert kept.get("a") == b"aaaa"  # now the most recently used
    kept.put("c", b"cccc")  # 12 bytes: "b" goes
    assert kept.get("b") is None and kept.get("a") == b"aaaa" and kept.get("c") == b"cccc"
    kept.put("big", b"x" * 11)  # larger than the whole cache: not kept, nothing dropped
    assert kept.get("big") is None and kept.size == 8


# --- the first query of a request: no health check round trip, same guarantee ------------------


db: Any = connection  # the health check's flags (Django >= 4.1) are not in django-stubs


def _new_request() -> None:
    db.health_check_done = False  # what Django does when a request starts


def _one() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return int(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_first_query_skips_the_health_check_and_replaces_a_dead_connection(monkeypatch: Any) -> None:
    import psycopg

    from backend.prepared import first_query

    checks: list[bool] = []
    is_usable = connection.is_usable

    def counted() -> bool:
        checks.append(True)
        return is_usable()

    monkeypatch.setattr(connection, "is_usable", counted)
    connection.ensure_connection()
    assert db.health_check_enabled, "CONN_HEALTH_CHECKS is what first_query stands in for"

    _new_request()
    _one()
    assert len(checks) == 1, "Django checks a reused connection before a request's first query"

    _new_request()
    assert first_query(_one) == 1
    assert len(checks) == 1, "first_query runs at once on a live connection"

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    dead = connection.connection
    s = connection.settings_dict
    with psycopg.connect(  # a PostgreSQL restart, an idle timeout…
        host=s["HOST"] or None, port=s["PORT"] or None, user=s["USER"] or None, dbname=s["NAME"], autocommit=True
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    _new_request()
    assert first_query(_one) == 1  # no error: the dead connection was replaced
    assert connection.connection is not dead and len(checks) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_first_query_does_not_retry_a_failing_statement() -> None:
    from backend.prepared import first_query

    calls = []

    def failing() -> None:  # a genuine error of the statement: not run twice
        calls.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    connection.ensure_connection()
    _new_request()
    with pytest.raises(DatabaseError):
        first_query(failing)
    assert len(calls) == 1
