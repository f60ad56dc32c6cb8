"""``backend.bulk.rows_update`` stores what Django's ``bulk_update`` stores, in one statement per
chunk on PostgreSQL (an array per column) and through ``bulk_update`` elsewhere."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backend.bulk import rows_update
from scheduling.models import PlanItem, PlanState
from tests.conftest import database_is_postgresql
from tests.factories import PatientFactory, TreatmentCourseFactory

pytestmark = pytest.mark.django_db

# Every kind of column a re-plan writes: text, integers, decimal, dates, JSON, timestamps, a
# foreign key, and NULLs (a column whose values are all NULL included).
FIELDS = [
    "status", "level", "ordinal", "dose_mg", "due", "window_start", "escalation", "blocked_by",
    "flags", "fingerprint", "updated_at", "closed_at", "course",
]  # fmt: skip


def _items(count: int) -> list[PlanItem]:
    patient = PatientFactory()
    base = date(2026, 11, 22)
    return [
        PlanItem.objects.create(
            patient=patient, key=f"injection:1:{n}", kind="injection", rule="OP-01", due=base, status="scheduled"
        )
        for n in range(count)
    ]


def _changed(items: list[PlanItem]) -> list[PlanItem]:
    course = TreatmentCourseFactory(patient=items[0].patient)
    moment = timezone.now()
    for n, item in enumerate(items):
        item.status = "overdue_L1" if n % 2 else "due"
        item.level = "L1" if n % 2 else ""
        item.ordinal = 70_000 + n  # past smallint
        item.dose_mg = None if n % 3 else Decimal("60.0")
        item.due = date(2027, 1, 1) + timedelta(days=n)
        item.window_start = None if n == 0 else date(2026, 12, 1)
        item.escalation = {"L1": f"2027-01-{n + 2:02d}", "L2": "2027-02-01"} if n % 2 else {}
        item.blocked_by = ["CA-03", 'quote " and \\ backslash'] if n == 1 else []
        item.flags = [{"code": "INJECTION_REMINDER", "params": [["due", "2027-01-01"]], "n": n}] if n else []
        item.fingerprint = -(2**63) + n if n % 2 else 2**63 - 1 - n
        item.updated_at = moment
        item.closed_at = None
        item.course = course if n % 2 else None
    return items


def _stored(items: list[PlanItem]) -> dict[int, tuple[object, ...]]:
    rows = PlanItem.objects.in_bulk([i.pk for i in items])
    return {pk: tuple(getattr(row, PlanItem._meta.get_field(f).attname) for f in FIELDS) for pk, row in rows.items()}


def _expected(items: list[PlanItem]) -> dict[int, tuple[object, ...]]:
    return {i.pk: tuple(getattr(i, PlanItem._meta.get_field(f).attname) for f in FIELDS) for i in items}


def test_values_read_back_as_bulk_update_stores_them() -> None:
    items = _changed(_items(7))
    twins = _changed(_items(7))
    assert rows_update(items, FIELDS) == 7
    PlanItem.objects.bulk_update(twins, FIELDS)
    ours, django = _stored(items), _stored(twins)
    assert ours == _expected(items)
    # The same values Django's bulk_update stores, row for row (but the course and the instant,
    # which differ between the two sets by construction).
    same = [n for n, f in enumerate(FIELDS) if f not in ("course", "updated_at")]
    assert [[ours[i.pk][n] for n in same] for i in items] == [[django[t.pk][n] for n in same] for t in twins]


def test_other_columns_are_left_alone() -> None:
    items = _items(3)
    before = {
        i.pk: (i.key, i.kind, i.rule, i.public_id, i.version)
        for i in PlanItem.objects.filter(pk__in=[x.pk for x in items])
    }
    for item in items:
        item.ordinal = 9
        item.key = "not written"
    rows_update(items, ["ordinal"])
    after = {
        i.pk: (i.key, i.kind, i.rule, i.public_id, i.version)
        for i in PlanItem.objects.filter(pk__in=[x.pk for x in items])
    }
    assert after == before
    assert set(PlanItem.objects.filter(pk__in=[x.pk for x in items]).values_list("ordinal", flat=True)) == {9}


def test_one_statement_per_chunk() -> None:
    items = _items(5)
    for item in items:
        item.ordinal = 4
    with CaptureQueriesContext(connection) as queries:
        assert rows_update(items, ["ordinal"], batch_size=2) == 5
    if database_is_postgresql():
        assert len(queries) == 3  # one statement per chunk of two, one array per column
        assert all("unnest(" in q["sql"] for q in queries)
    assert set(PlanItem.objects.filter(pk__in=[i.pk for i in items]).values_list("ordinal", flat=True)) == {4}


def test_an_object_without_a_key_is_refused_before_anything_is_written() -> None:
    items = _items(2)
    items[0].ordinal = 4
    with pytest.raises(ValueError, match="primary key"):
        rows_update([*items, PlanItem(key="never stored", ordinal=4)], ["ordinal"])
    assert PlanItem.objects.get(pk=items[0].pk).ordinal == 0


def test_a_primary_key_that_is_a_foreign_key() -> None:
    patient = PatientFactory()
    PlanState.objects.create(patient=patient, updated_at=timezone.now())
    assert rows_update([PlanState(patient_id=patient.pk, digest=-5)], ["digest"]) == 1
    assert PlanState.objects.get(patient=patient).digest == -5


@pytest.mark.parametrize(
    ("fields", "error"),
    [([], "no field"), (["id"], "id is not a writable column"), (["nope"], "nope")],
)
def test_bad_fields_are_refused_before_anything_is_written(fields: list[str], error: str) -> None:
    items = _items(1)
    items[0].ordinal = 99
    with pytest.raises(Exception, match=error):
        rows_update(items, fields)
    assert PlanItem.objects.get(pk=items[0].pk).ordinal == 0


def test_mixed_models_are_refused() -> None:
    items = _items(1)
    with pytest.raises(ValueError, match="one model"):
        rows_update([items[0], PlanState(patient_id=items[0].patient_id)], ["updated_at"])


def test_nothing_to_write() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert rows_update([], ["ordinal"]) == 0
    assert not queries


@pytest.mark.django_db(transaction=True)
def test_chunks_are_written_all_or_none() -> None:
    items = _items(4)
    for item in items:
        item.ordinal = 5
    items[3].blocked_by = object()  # not JSON: the last chunk fails after the first was sent
    with pytest.raises(TypeError):
        rows_update(items, ["ordinal", "blocked_by"], batch_size=2)
    assert set(PlanItem.objects.filter(pk__in=[i.pk for i in items]).values_list("ordinal", flat=True)) == {0}


# Texts an array literal must quote: its own quote, backslash, braces, commas, the word NULL,
# the empty string, spaces at either end, non-ASCII and control characters.
TRICKY = [
    'a "quoted" word',
    "back\\slash\\",
    "{braces, and commas}",
    "NULL",
    "",
    "  spaced  ",
    "é – ü ✓",
    "tab\tnew\nline",
]


def test_texts_uuids_booleans_and_decimals_read_back_as_written() -> None:
    """The arrays are sent as PostgreSQL array text (``backend.bulk._array_text``): every kind of
    scalar the models hold reads back as it was, as ``bulk_update`` writes it."""
    items = _items(len(TRICKY))
    for item, text in zip(items, TRICKY, strict=True):
        item.key = text
        item.flags = [{"text": text}]
    assert rows_update(items, ["key", "flags"]) == len(items)
    stored = PlanItem.objects.in_bulk([i.pk for i in items])
    assert [(stored[i.pk].key, stored[i.pk].flags) for i in items] == [(t, [{"text": t}]) for t in TRICKY]

    patients = [PatientFactory() for _ in TRICKY]
    twins = [PatientFactory() for _ in TRICKY]
    fields = ["first_name", "consent_email", "consent_push", "weight_kg", "public_id", "birth_date", "updated_at"]
    moment = timezone.now()
    for n, (patient, twin, text) in enumerate(zip(patients, twins, TRICKY, strict=True)):
        for row in (patient, twin):
            row.first_name = text
            row.consent_email, row.consent_push = n % 2 == 0, n % 3 == 0
            row.weight_kg = None if n == 0 else Decimal("0.1") * n + Decimal("40")
            row.birth_date = date(1930 + n, 2, 28)
            row.updated_at = moment - timedelta(days=n, microseconds=n)
        patient.public_id = uuid.uuid4()
    assert rows_update(patients, fields) == len(patients)
    type(twins[0]).objects.bulk_update(twins, [f for f in fields if f != "public_id"])
    ours = type(patients[0]).objects.in_bulk([p.pk for p in patients])
    theirs = type(twins[0]).objects.in_bulk([t.pk for t in twins])
    for patient, twin in zip(patients, twins, strict=True):
        assert [getattr(ours[patient.pk], f) for f in fields] == [getattr(patient, f) for f in fields]
        assert [getattr(ours[patient.pk], f) for f in fields if f != "public_id"] == [
            getattr(theirs[twin.pk], f) for f in fields if f != "public_id"
        ]


def test_rows_insert_sql_refuses_what_it_cannot_write() -> None:
    """No statement for no rows, nor for rows of two models."""
    from backend.bulk import rows_insert_sql

    with pytest.raises(ValueError, match="no object"):
        rows_insert_sql([], connection=connection)
    with pytest.raises(ValueError, match="one model"):
        rows_insert_sql([PlanItem(key="a"), PlanState()], connection=connection)


@pytest.mark.postgres
def test_rows_insert_sql_writes_what_bulk_create_writes() -> None:
    """Every column but the automatic key, defaults and ``auto_now`` included, from arrays."""
    from backend.bulk import rows_insert_sql

    patient = PatientFactory()
    item = PlanItem(
        patient=patient, key='k "1" \\ {x}', kind="injection", rule="OP-01", due=date(2026, 7, 15), status="due",
        escalation={"L1": "2026-07-16"}, blocked_by=["CA-03"], dose_mg=Decimal("60.0"),
    )  # fmt: skip
    sql, params = rows_insert_sql([item], connection=connection, suffix="RETURNING id")
    assert '"id"' not in sql.split("SELECT")[0]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (pk,) = cursor.fetchone()
    stored = PlanItem.objects.get(pk=pk)
    assert (stored.key, stored.escalation, stored.blocked_by, stored.dose_mg) == (
        item.key,
        {"L1": "2026-07-16"},
        ["CA-03"],
        Decimal("60.0"),
    )
    assert stored.public_id == item.public_id and stored.created_at == item.created_at is not None
