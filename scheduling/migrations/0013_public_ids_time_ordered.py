"""Plan items and escalations get time-ordered public ids (``backend.ids.uuid7``): a Python
default, no change in the database (existing ids stay as they are)."""

import backend.ids
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('scheduling', '0012_days_late_derived'),
    ]

    operations = [
        migrations.AlterField(
            model_name='escalation',
            name='public_id',
            field=models.UUIDField(default=backend.ids.uuid7, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='historicalescalation',
            name='public_id',
            field=models.UUIDField(db_index=True, default=backend.ids.uuid7, editable=False),
        ),
        migrations.AlterField(
            model_name='planitem',
            name='public_id',
            field=models.UUIDField(default=backend.ids.uuid7, editable=False, unique=True),
        ),
    ]
