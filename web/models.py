"""What the nurse did about a worklist line: called the patient, rescheduled, or the dose was given.

Decision: a model of its own rather than Escalation history. An outcome happens whether or not an
escalation is open (a due or blocked item has none), several outcomes follow one another on the
same item ("called" on Monday, "rescheduled" on Tuesday), and ``Escalation.resolution`` is one
short field that the plan sync owns. simple-history keeps who recorded each row and when, so
outcomes sit in the same audit log as the booklet.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from patients.models import Patient
from scheduling.models import PlanItem


class WorklistOutcome(models.Model):
    class Outcome(models.TextChoices):
        CALLED = "called", _("Called")
        RESCHEDULED = "rescheduled", _("Rescheduled")
        GIVEN = "given", _("Given")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    plan_item = models.ForeignKey(PlanItem, on_delete=models.PROTECT, related_name="worklist_outcomes")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="worklist_outcomes")
    outcome = models.CharField(_("outcome"), max_length=12, choices=Outcome.choices)
    note = models.CharField(_("note"), max_length=300, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("worklist outcome")
        ordering = ("-recorded_at", "-pk")
        indexes = [models.Index(fields=["plan_item", "recorded_at"], name="outcome_item_time_idx")]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} — {self.plan_item}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.plan_item_id and self.patient_id and self.plan_item.patient_id != self.patient_id:
            raise ValidationError({"plan_item": _("This item belongs to another patient.")})
