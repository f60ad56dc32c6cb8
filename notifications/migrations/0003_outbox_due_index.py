"""The sweep's claim index: pending rows only, in claim order (bench/bench_sweep.py).

``outbox_claimable_idx`` held pending *and* sending rows on ``next_attempt_at`` alone: each claim
walked the rows claimed before it in the same minute (still in the index as ``sending``) and
sorted every row of a due time by device. ``outbox_due_idx`` holds only pending rows, ordered as
the claim reads them (``COALESCE(device_id, 0)``: no NULL, so a claim can resume after the last
key of the previous one with a row comparison), so a claim is one index range scan of the rows
it takes.

Each claim, outcome and cancel rewrites the row into every index (the state is in their keys or
predicates, so no update is HOT), so the indexes that did not earn their keep go: the foreign-key
indexes of mostly-NULL columns (device, recipient, escalation, digest) become partial on NOT
NULL, the patient's is the prefix of ``outbox_patient_state_idx``, and the ``varchar_pattern_ops``
copy of the unique key (Django's for LIKE, never used on a hash) is dropped.

On PostgreSQL the indexes are built and dropped ``CONCURRENTLY`` (a 30-million-row outbox keeps
taking writes meanwhile), so this migration is not atomic; elsewhere they are plain DDL.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Coalesce

from backend.migration_ops import AddIndexOnline, RemoveIndexOnline

KEY_LIKE_INDEX = "notifications_outboxmessage_key_85a049d3_like"


def drop_key_like_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{KEY_LIKE_INDEX}"')


def create_key_like_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{KEY_LIKE_INDEX}" '
            'ON "notifications_outboxmessage" ("key" varchar_pattern_ops)'
        )


def _fk(to: str, related_name: str) -> models.ForeignKey[Any, Any]:
    return models.ForeignKey(
        blank=True,
        db_index=False,
        null=True,
        on_delete=django.db.models.deletion.PROTECT,
        related_name=related_name,
        to=to,
    )


def _partial(field: str, name: str) -> AddIndexOnline:
    return AddIndexOnline(
        model_name="outboxmessage",
        index=models.Index(condition=models.Q((f"{field}__isnull", False)), fields=[field], name=name),
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("notifications", "0002_outbox_lease_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexOnline(
            model_name="outboxmessage",
            index=models.Index(
                models.F("next_attempt_at"),
                Coalesce("device", models.Value(0), output_field=models.BigIntegerField()),
                models.F("id"),
                condition=models.Q(("state", "pending")),
                name="outbox_due_idx",
            ),
        ),
        RemoveIndexOnline(
            model_name="outboxmessage",
            name="outbox_claimable_idx",
        ),
        _partial("device", "outbox_device_idx"),
        _partial("recipient_user", "outbox_recipient_idx"),
        _partial("escalation", "outbox_escalation_idx"),
        _partial("digest", "outbox_digest_idx"),
        migrations.AlterField(model_name="outboxmessage", name="device", field=_fk("notifications.device", "outbox")),
        migrations.AlterField(
            model_name="outboxmessage", name="digest", field=_fk("notifications.outboxmessage", "folded")
        ),
        migrations.AlterField(
            model_name="outboxmessage", name="escalation", field=_fk("scheduling.escalation", "outbox")
        ),
        migrations.AlterField(model_name="outboxmessage", name="patient", field=_fk("patients.patient", "outbox")),
        migrations.AlterField(
            model_name="outboxmessage", name="recipient_user", field=_fk(settings.AUTH_USER_MODEL, "outbox")
        ),
        migrations.RunPython(drop_key_like_index, create_key_like_index, elidable=False),
    ]
