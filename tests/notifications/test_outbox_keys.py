"""The outbox's idempotency key: unique per patient, and by itself for the staff rows without one
(``notifications/migrations/0006``; docs/benchmarks.md, re-planning item 19)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from notifications import services
from notifications.models import MessageKind, OutboxMessage

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 7, 1, 7, 0, tzinfo=UTC)


def _row(key: str, patient: Any = None, **extra: Any) -> OutboxMessage:
    return OutboxMessage(
        key=key,
        kind=MessageKind.REMINDER if patient is not None else MessageKind.DIGEST,
        channel="email",
        patient=patient,
        send_at=WHEN,
        next_attempt_at=WHEN,
        **extra,
    )


def test_a_patients_key_is_written_once(make_patient: Any) -> None:
    patient = make_patient()
    _row("k1", patient).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        _row("k1", patient).save()
    assert OutboxMessage.objects.filter(key="k1").count() == 1


def test_a_staff_rows_key_is_written_once(django_user_model: Any) -> None:
    nurse = django_user_model.objects.create_user(email="n@example.org", password="x")
    _row("digest-1", recipient_user=nurse).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        _row("digest-1", recipient_user=nurse).save()
    assert OutboxMessage.objects.filter(key="digest-1").count() == 1


def test_create_rows_skips_the_keys_a_patient_has_and_audits_only_the_new(make_patient: Any) -> None:
    first, second = make_patient(), make_patient()
    assert services.create_rows([_row("a", first), _row("b", first)], reason="planned") == 2
    # "a" again for the same patient is skipped; the other rows are new.
    again = [_row("a", first), _row("c", first), _row("d", second)]
    assert services.create_rows(again, reason="planned") == 2
    assert sorted(OutboxMessage.objects.values_list("patient_id", "key")) == sorted(
        [(first.pk, "a"), (first.pk, "b"), (first.pk, "c"), (second.pk, "d")]
    )
    assert OutboxMessage.history.count() == 4


def test_create_rows_skips_a_staff_rows_existing_key(django_user_model: Any, make_patient: Any) -> None:
    nurse = django_user_model.objects.create_user(email="n2@example.org", password="x")
    patient = make_patient()
    assert services.create_rows([_row("s1", recipient_user=nurse)], reason="planned") == 1
    # The same key again without a patient is skipped; with a patient it is that patient's own.
    again = [_row("s1", recipient_user=nurse), _row("s1", patient)]
    assert services.create_rows(again, reason="planned") == 1
    assert sorted(OutboxMessage.objects.values_list("patient_id", flat=True), key=str) == sorted(
        [None, patient.pk], key=str
    )
    assert OutboxMessage.history.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_migration_builds_the_new_keys_online_and_drops_the_old() -> None:
    """Back to 0005 (the key unique by itself), a half-built index left behind by an interrupted
    run, then 0006 again: the per-patient constraint and the staff rows' partial index are valid,
    and no constraint is left on the key alone."""
    from django.db.migrations.executor import MigrationExecutor

    def catalog() -> dict[str, tuple[bool, bool, str]]:
        """Unique indexes of the outbox: name -> (valid, backs a constraint, definition)."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, i.indisvalid, EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid),"
                " pg_get_indexdef(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = 'notifications_outboxmessage'::regclass AND i.indisunique AND NOT i.indisprimary"
            )
            return {row[0]: (row[1], row[2], row[3]) for row in cursor.fetchall()}

    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("notifications")
    try:
        MigrationExecutor(connection).migrate([("notifications", "0005_outbox_staff_due_index")])
        (before,) = catalog().values()  # one unique index: the key's own
        assert before[2].endswith("USING btree (key)")
        # An interrupted CREATE INDEX CONCURRENTLY leaves an invalid index of the name.
        with connection.cursor() as cursor:
            cursor.execute(
                'CREATE UNIQUE INDEX "outbox_patient_key_uniq" ON notifications_outboxmessage (patient_id, key)'
            )
            cursor.execute(
                "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'outbox_patient_key_uniq'::regclass"
            )
        assert catalog()["outbox_patient_key_uniq"][0] is False
    finally:
        MigrationExecutor(connection).migrate(latest)
    after = catalog()
    assert set(after) == {"outbox_patient_key_uniq", "outbox_staff_key_uniq"}
    assert after["outbox_patient_key_uniq"][:2] == (True, True)
    assert "(patient_id, key)" in after["outbox_patient_key_uniq"][2]
    valid, constrained, definition = after["outbox_staff_key_uniq"]
    assert valid and not constrained and definition.endswith("(key) WHERE (patient_id IS NULL)")
