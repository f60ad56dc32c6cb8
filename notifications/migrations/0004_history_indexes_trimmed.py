"""The outbox's audit table keeps only the indexes its readers use (bench/bench_delivery.py).

Every delivery outcome writes an audit row, so each index of ``notifications_historicaloutboxmessage``
is written once per message sent: simple-history gives it one per foreign key (six) and two for
the key (btree and ``varchar_pattern_ops``). Its readers look a message's entries up by ``id``
(the admin's history page, ``row.history``); none by key or foreign key (copies without
constraints), so those eight go. The primary key, ``id``, ``history_date`` and ``history_user``
(a real foreign key) stay.

On PostgreSQL they are dropped (and on the way back built) ``CONCURRENTLY``, so the table keeps
taking audit rows meanwhile and this migration is not atomic; elsewhere they are plain DDL.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TABLE = "notifications_historicaloutboxmessage"
COLUMNS = ("key", "patient_id", "recipient_user_id", "device_id", "plan_item_id", "escalation_id", "digest_id")


def _concurrently(schema_editor: Any) -> str:
    return "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""


def drop_indexes(apps: Any, schema_editor: Any) -> None:
    """Drop every plain one-column index of ``COLUMNS``, whatever its name (``key``'s LIKE copy too)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    quote = schema_editor.quote_name
    for name, spec in sorted(constraints.items()):
        if (
            spec["index"]
            and not spec["unique"]
            and not spec["primary_key"]
            and spec["columns"] in ([c] for c in COLUMNS)
        ):
            schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {quote(name)}")


def create_indexes(apps: Any, schema_editor: Any) -> None:
    """The indexes simple-history's fields ask for, under the names Django gives them."""
    quote = schema_editor.quote_name
    made = [(schema_editor._create_index_name(TABLE, [c]), c, "") for c in COLUMNS]
    if schema_editor.connection.vendor == "postgresql":
        made.append((schema_editor._create_index_name(TABLE, ["key"], suffix="_like"), "key", " varchar_pattern_ops"))
    for name, column, opclass in made:
        schema_editor.execute(
            f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {quote(name)} "
            f"ON {quote(TABLE)} ({quote(column)}{opclass})"
        )


def _history_fk(to: str) -> models.ForeignKey[Any, Any]:
    return models.ForeignKey(
        blank=True,
        db_constraint=False,
        db_index=False,
        null=True,
        on_delete=django.db.models.deletion.DO_NOTHING,
        related_name="+",
        to=to,
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("notifications", "0003_outbox_due_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_indexes, create_indexes, elidable=False)],
            state_operations=[
                migrations.AlterField(
                    model_name="historicaloutboxmessage",
                    name="key",
                    field=models.CharField(max_length=64, verbose_name="idempotency key"),
                ),
                migrations.AlterField(
                    model_name="historicaloutboxmessage", name="patient", field=_history_fk("patients.patient")
                ),
                migrations.AlterField(
                    model_name="historicaloutboxmessage",
                    name="recipient_user",
                    field=_history_fk(settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name="historicaloutboxmessage", name="device", field=_history_fk("notifications.device")
                ),
                migrations.AlterField(
                    model_name="historicaloutboxmessage", name="plan_item", field=_history_fk("scheduling.planitem")
                ),
                migrations.AlterField(
                    model_name="historicaloutboxmessage",
                    name="escalation",
                    field=_history_fk("scheduling.escalation"),
                ),
                migrations.AlterField(
                    model_name="historicaloutboxmessage",
                    name="digest",
                    field=_history_fk("notifications.outboxmessage"),
                ),
            ],
        )
    ]
