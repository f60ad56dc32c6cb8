"""Row locks on patients: what reads a patient's facts or plan and writes from them takes turns."""

from __future__ import annotations

from django.db import connection

from backend.bulk import array_text
from patients.models import Patient


def patients_lock(patient_ids: list[int]) -> None:
    """Lock the rows of ``patient_ids`` until the transaction ends, in id order (PostgreSQL).

    One re-plan of a patient at a time, from the facts read to the commit, and one outbox sync:
    ``scheduling.services.plans_sync_batch`` and ``notifications.services.outbox_sync`` call it
    first.

    A re-plan reads the facts, then writes the plan they give. Two at once on one patient, the
    nightly pass's batch and a nurse's dose, could commit in the wrong order: the batch, holding
    facts read before the dose, would store its plan over the one the dose gave (the injection
    just given due again, its reminders and escalation back) until the next re-plan. So each
    re-plan first locks its patients' rows, in id order (batches that share patients queue, never
    deadlock), until its transaction ends: a fact service's re-plan waits for the batch, then
    reads the facts with its own change. An outbox sync (a preference, a device) reads the open
    items and the pending messages and writes the difference: it takes the same lock, so it never
    works from items a re-plan is rewriting.

    ``FOR NO KEY UPDATE``: a row that only references the patient does not wait for its foreign
    key check, but a booklet write does (its revision trigger updates the patient's row,
    ``patients/0003``), and so does an edit of the patient. SQLite needs nothing: its
    transactions take the write lock when they begin (``IMMEDIATE``).
    """
    if connection.vendor != "postgresql" or not patient_ids:
        return
    table = connection.ops.quote_name(Patient._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE",  # noqa: S608  # the model's table
            [array_text(sorted(patient_ids))],
        )
