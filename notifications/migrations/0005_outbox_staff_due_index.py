"""The sweep's digest fold as an index-only range (``delivery.staff_digest_fold``).

Each sweep first counts the due staff alerts per recipient and channel (to fold a flood into a
digest). The planner, which takes the due range to be large (sent rows have past due times),
ANDed the bitmaps of ``outbox_recipient_idx`` (every staff row: 1.65 M at a million patients)
and ``outbox_due_idx``: 268 ms per sweep at a million patients, for no row. ``outbox_staff_due_idx``
holds only pending staff alerts, by due time, with what the count groups by.

Built ``CONCURRENTLY`` on PostgreSQL (not atomic), plain DDL elsewhere.
"""

from __future__ import annotations

from django.conf import settings
from django.db import migrations, models

from backend.migration_ops import AddIndexOnline


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("notifications", "0004_history_indexes_trimmed"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexOnline(
            model_name="outboxmessage",
            index=models.Index(
                condition=models.Q(("kind", "escalation"), ("recipient_user__isnull", False), ("state", "pending")),
                fields=["next_attempt_at"],
                include=("recipient_user", "channel"),
                name="outbox_staff_due_idx",
            ),
        ),
    ]
