"""Days late are derived where they are read, not stored (``PlanItem.days_late``, ``DaysLate``).

A late item is a day later each day by the calendar alone: at the benchmark's million the nightly
pass wrote that on ~2.3 items a patient and gave 9 plans in 10 a new revision, every night, for
a value each reader counts from the item's status and due date and its patient's local date. The
columns are dropped (PostgreSQL: a catalogue change, no rewrite of the table). A process of the
previous release still running reads and writes them: deploy with its workers stopped.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('scheduling', '0011_plan_item_fillfactor'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='planitem',
            name='days_late',
        ),
        migrations.RemoveField(
            model_name='planstate',
            name='late_on',
        ),
    ]
