"""The outbox's idempotency key unique per patient, not by itself (docs/benchmarks.md, re-planning
item 19).

A unique index on the 64-character hash alone puts every new row, and every claim, outcome and
cancel (the state is in other indexes' keys, so no update of an outbox row is HOT), on a random
leaf page of an index of 3.4 GB at a million patients: about one page read from disk per row for
the next day's re-plan. Led by the patient, a batch of neighbouring patients' keys sits on
neighbouring pages. A key is a hash of the message's parts, the patient's item or escalation among
them, so no two patients' keys meet; the staff rows without a patient (the daily digests) stay
unique by key alone, through a partial unique index.

The new indexes are built ``CONCURRENTLY`` on PostgreSQL (the outbox keeps taking writes), before
the old constraint goes, so the key is never left unguarded; not atomic for that. Elsewhere plain
DDL.
"""

from __future__ import annotations

from django.conf import settings
from django.db import migrations, models

from backend.migration_ops import AddUniqueConstraintOnline


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("notifications", "0005_outbox_staff_due_index"),
        ("patients", "0004_sql_isoformat_json"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddUniqueConstraintOnline(
            model_name="outboxmessage",
            constraint=models.UniqueConstraint(fields=("patient", "key"), name="outbox_patient_key_uniq"),
        ),
        AddUniqueConstraintOnline(
            model_name="outboxmessage",
            constraint=models.UniqueConstraint(
                condition=models.Q(("patient__isnull", True)), fields=("key",), name="outbox_staff_key_uniq"
            ),
        ),
        migrations.AlterField(
            model_name="outboxmessage",
            name="key",
            field=models.CharField(max_length=64, verbose_name="idempotency key"),
        ),
    ]
