"""The nightly pass's selector as one index range (``selectors.patients_with_open_items``).

The selector ORed three date columns (reminder, window start, due) of open items: a sequential
scan of the 28 M plan items at a million patients (12.6 s). ``plan_open_next_date_idx`` keys
open items by the earliest of the three (``models.next_date()``, NULLs coalesced to the due date)
with the patient, so the selector reads one range of the index and no heap. The three dates are
included: PostgreSQL does an index-only scan only when every column the query names is in the
index, even those used only inside the indexed expression. Size: 30 MB at 22,000 patients
(627,177 items), about 1.3 GB at a million.

Built ``CONCURRENTLY`` on PostgreSQL (not atomic), plain DDL elsewhere.
"""

from __future__ import annotations

import django.db.models.functions.comparison
from django.db import migrations, models

from backend.migration_ops import AddIndexOnline


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("scheduling", "0006_plan_item_escalation_indexes"),
    ]

    operations = [
        AddIndexOnline(
            model_name="planitem",
            index=models.Index(
                django.db.models.functions.comparison.Least(
                    django.db.models.functions.comparison.Coalesce("reminder_on", "due"),
                    django.db.models.functions.comparison.Coalesce("window_start", "due"),
                    models.F("due"),
                ),
                models.F("patient"),
                include=("reminder_on", "window_start", "due"),
                condition=models.Q(("status__in", ["done", "missed", "cancelled"]), _negated=True),
                name="plan_open_next_date_idx",
            ),
        ),
    ]
