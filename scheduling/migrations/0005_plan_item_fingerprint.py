from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0004_plan_state"),
    ]

    operations = [
        migrations.AddField(
            model_name="planitem",
            name="fingerprint",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
    ]
