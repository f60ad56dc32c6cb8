"""The escalation pass as an index-only scan (``scheduling.selectors.overdue_steps``).

At a million patients the late items (due, overdue, blocked: 2.2 M) are a few percent of the 28 M
plan items and lie on nearly every page of the 8 GB heap, so reading their ``escalation`` dates
from the heap read the whole table (11 s of the 11.2 s pass). ``plan_late_ladder_idx`` holds
only late items, keyed by due date, with what the pass returns (id, patient, ladder dates).
An item enters it when a re-plan makes it late, an update that was never HOT (the status is in
the open-items index).

The items past due that the nightly pass has not yet moved (still scheduled, reminder or window
open: a day's worth) are read through the open-items index, now keyed ``(status, due)``
(``plan_open_status_due_idx``, was ``(due, status)``): with the status first, they are a few
exact ranges, where the planner, which cannot know that almost no past-due item has an early
status, chose a bitmap scan of every past-due row on the ``due`` index and read the heap.

On PostgreSQL the index is built ``CONCURRENTLY`` (plan writes go on meanwhile), so this
migration is not atomic; elsewhere it is plain DDL.
"""

from __future__ import annotations

from django.db import migrations, models

from backend.migration_ops import AddIndexOnline, RemoveIndexOnline

OPEN = models.Q(("status__in", ["done", "missed", "cancelled"]), _negated=True)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("patients", "0002_sql_isoformat"),
        ("scheduling", "0005_plan_item_fingerprint"),
    ]

    operations = [
        AddIndexOnline(
            model_name="planitem",
            index=models.Index(condition=OPEN, fields=["status", "due"], name="plan_open_status_due_idx"),
        ),
        RemoveIndexOnline(model_name="planitem", name="plan_open_due_idx"),
        AddIndexOnline(
            model_name="planitem",
            index=models.Index(
                condition=models.Q(
                    ("status__in", ["due", "overdue_L1", "overdue_L2", "overdue_L3", "overdue_L4", "blocked"])
                ),
                fields=["due"],
                include=("id", "patient", "escalation"),
                name="plan_late_ladder_idx",
            ),
        ),
    ]
