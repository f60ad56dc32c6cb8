"""The sweep's claim index: pending rows only, in claim order (bench/bench_sweep.py).

``outbox_claimable_idx`` held pending *and* sending rows on ``next_attempt_at`` alone: each claim
walked the rows claimed before it in the same minute (still in the index as ``sending``) and
sorted every row of a due time by device. ``outbox_due_idx`` holds only pending rows, ordered as
the claim reads them, so a claim is one index range scan of the rows it takes.

On PostgreSQL both indexes are built and dropped ``CONCURRENTLY`` (a 30-million-row outbox keeps
taking writes meanwhile), so this migration is not atomic; elsewhere they are plain DDL.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex, RemoveIndex


class AddIndexOnline(AddIndexConcurrently):
    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class RemoveIndexOnline(RemoveIndexConcurrently):
    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("notifications", "0002_outbox_lease_index"),
    ]

    operations = [
        AddIndexOnline(
            model_name="outboxmessage",
            index=models.Index(
                condition=models.Q(("state", "pending")),
                fields=["next_attempt_at", "device", "id"],
                name="outbox_due_idx",
            ),
        ),
        RemoveIndexOnline(
            model_name="outboxmessage",
            name="outbox_claimable_idx",
        ),
    ]
