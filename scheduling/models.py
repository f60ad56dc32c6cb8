"""The stored plan: the rules' output as rows, kept in step with the facts.

A ``PlanItem`` is identified by its rule-engine ``key`` (stable across re-planning), so
re-planning with unchanged facts rewrites nothing and ``version`` changes only when the
item's dates change or a closed item is planned again. Reminders (outbox keys) and iCal (UID,
SEQUENCE) rely on both.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Least
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from backend.ids import uuid7
from patients.models import CareTeam, Patient, TreatmentCourse
from scheduling.rules.items import days_late_on


class ItemKind(models.TextChoices):
    INJECTION = "injection", _("Injection")
    CONSOLIDATION = "consolidation", _("Consolidation")
    CALCIUM_CHECK = "calcium_check", _("Calcium check")
    VITAMIN_D_DOSE = "vitamin_d_dose", _("Vitamin D dose")
    VITAMIN_D_TEST = "vitamin_d_test", _("Vitamin D test")
    CTX_CHECK = "ctx_check", _("CTX check")
    DENTAL_VISIT = "dental_visit", _("Dental visit")
    REEVALUATION = "reevaluation", _("Re-evaluation")


class ItemStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    REMINDER = "reminder", _("Reminder")
    WINDOW_OPEN = "window_open", _("Window open")
    DUE = "due", _("Due")
    OVERDUE_L1 = "overdue_L1", _("Overdue (L1)")
    OVERDUE_L2 = "overdue_L2", _("Overdue (L2)")
    OVERDUE_L3 = "overdue_L3", _("Overdue (L3)")
    OVERDUE_L4 = "overdue_L4", _("Overdue (L4)")
    DONE = "done", _("Done")
    MISSED = "missed", _("Missed")
    CANCELLED = "cancelled", _("Cancelled")
    BLOCKED = "blocked", _("Blocked")


# Open items the last re-plan found late (their due date came) or blocked, and the others.
EARLY_STATUSES = (ItemStatus.SCHEDULED, ItemStatus.REMINDER, ItemStatus.WINDOW_OPEN)
LATE_STATUSES = (
    ItemStatus.DUE,
    ItemStatus.OVERDUE_L1,
    ItemStatus.OVERDUE_L2,
    ItemStatus.OVERDUE_L3,
    ItemStatus.OVERDUE_L4,
    ItemStatus.BLOCKED,
)
OPEN_STATUSES = (*EARLY_STATUSES, *LATE_STATUSES)
CLOSED_STATUSES = (ItemStatus.DONE, ItemStatus.MISSED, ItemStatus.CANCELLED)


def next_date() -> Least:
    """An item's first date that moves its status: the earliest of reminder, window start, due.

    NULLs coalesced to the due date in SQL (LEAST ignores NULLs on PostgreSQL but returns NULL on
    SQLite); the nightly pass's query and its index use this same expression.
    """
    return Least(Coalesce("reminder_on", "due"), Coalesce("window_start", "due"), F("due"))


class Level(models.TextChoices):
    L1 = "L1", "L1"
    L2 = "L2", "L2"
    L3 = "L3", "L3"
    L4 = "L4", "L4"


# The name under which a query's ``scheduling.expressions.DaysLate`` gives ``PlanItem.days_late``.
DAYS_LATE_ANNOTATION = "days_late_now"


class PlanItem(models.Model):
    """One upcoming (or overdue) step of a patient's plan."""

    # Time-ordered (backend.ids): the nightly pass creates items for patients all over the table.
    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="plan_items")
    course = models.ForeignKey(
        TreatmentCourse, on_delete=models.PROTECT, null=True, blank=True, related_name="plan_items"
    )
    key = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=ItemKind.choices)
    protocol = models.CharField(max_length=40, blank=True)
    product = models.CharField(max_length=40, blank=True)
    dose_mg = models.DecimalField(max_digits=6, decimal_places=1, null=True, blank=True)
    phase = models.CharField(max_length=20, blank=True)
    ordinal = models.PositiveIntegerField(default=0)
    rule = models.CharField(max_length=20)
    due = models.DateField(db_index=True)
    window_start = models.DateField(null=True, blank=True)
    window_end = models.DateField(null=True, blank=True)
    reminder_on = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=ItemStatus.choices)
    level = models.CharField(max_length=2, choices=Level.choices, blank=True)
    # No ``days_late`` column: a late item is a day later each day by the calendar alone, so it is
    # derived where it is read (the ``days_late`` property, ``scheduling.expressions.DaysLate``).
    escalation = models.JSONField(default=dict, blank=True)
    blocked_by = models.JSONField(default=list, blank=True)
    # The rules' flags about this item (code, rule, severity, blocks, override_allowed, params),
    # so lists can explain a block in the reader's language without re-running the rules.
    flags = models.JSONField(default=list, blank=True)
    # A digest of the values above (scheduling.services.fingerprint): re-planning recognises an
    # unchanged item without loading it. NULL on rows written before it existed.
    fingerprint = models.BigIntegerField(null=True, blank=True, editable=False)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    dates_changed_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("plan item")
        ordering = ("due", "kind")
        constraints = [models.UniqueConstraint(fields=["patient", "key"], name="uniq_plan_item_patient_key")]
        indexes = [
            models.Index(fields=["patient", "due"], name="plan_patient_due_idx"),
            # Open items by status, then due date: the worklist's statuses, and the escalation
            # pass's items still waiting for the nightly pass (an early status, past due).
            models.Index(
                fields=["status", "due"],
                name="plan_open_status_due_idx",
                condition=~Q(status__in=["done", "missed", "cancelled"]),
            ),
            # The escalation pass (selectors.overdue_steps) as an index-only scan: late items
            # are a few percent of the plan, scattered over the whole heap.
            models.Index(
                fields=["due"],
                include=["id", "patient", "escalation"],
                name="plan_late_ladder_idx",
                condition=Q(status__in=["due", "overdue_L1", "overdue_L2", "overdue_L3", "overdue_L4", "blocked"]),
            ),
            # The nightly pass (selectors.patients_with_open_items): open items by the first of
            # their reminder, window and due dates, with the patient: an index-only range scan
            # (PostgreSQL wants the expression's columns in the index too).
            models.Index(
                next_date(),
                F("patient"),
                include=["reminder_on", "window_start", "due"],
                name="plan_open_next_date_idx",
                condition=~Q(status__in=["done", "missed", "cancelled"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} due {self.due:%d/%m/%Y} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def days_late(self) -> int:
        """Days late on the patient's local today (TIME-01), for this row's stored status (the
        rules' ``days_late_on``), or as a query annotated ``days_late_now=DaysLate(…)`` counted
        them (the worklist orders by them)."""
        counted: int | None = self.__dict__.get(DAYS_LATE_ANNOTATION)
        if counted is not None:
            return counted
        if self.status not in LATE_STATUSES:
            return 0  # without reading the patient: not late whatever the date
        return days_late_on(str(self.status), self.due, self.patient.local_date(timezone.now()))


class PlanState(models.Model):
    """The patient-level part of the stored plan: one row per patient, written by every re-plan.

    ``flags`` are the rules' flags about the patient as a whole (CA-03, ONJ-01, DUP-01, …), so the
    plan endpoints explain them without re-running the rules. ``revision`` changes whenever the
    stored plan of the patient changes (an item created, updated or closed, or these flags), so
    the plan's ETag is one row read.
    """

    patient = models.OneToOneField(Patient, on_delete=models.PROTECT, primary_key=True, related_name="plan_state")
    flags = models.JSONField(default=list, blank=True)
    revision = models.UUIDField(default=uuid.uuid4)
    updated_at = models.DateTimeField()
    # The digest of the plan the last sync stored (scheduling.services.plan_digest): a re-plan
    # whose rules give the same plan writes nothing and reads none of its items. NULL: diff the
    # items (rows written before it existed, or by a loader).
    digest = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("plan state")

    def __str__(self) -> str:
        return f"plan state of patient {self.patient_id} ({self.revision})"


class Escalation(models.Model):
    """One level of an escalation ladder (OP-04, ONC-02, ZOL-08, CONS-05), opened once (and again
    if its item reopens: ``reopened``)."""

    class Audience(models.TextChoices):
        PATIENT = "patient", _("Patient")
        NURSE = "nurse", _("Nurse")
        PHYSICIAN = "physician", _("Physician")
        SPECIALIST = "specialist", _("Specialist")

    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    plan_item = models.ForeignKey(PlanItem, on_delete=models.PROTECT, related_name="escalations")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="escalations")
    level = models.CharField(max_length=2, choices=Level.choices)
    rule = models.CharField(max_length=20)
    severity = models.CharField(max_length=1)
    notify = models.JSONField(default=list)
    opened_at = models.DateTimeField()
    opened_on = models.DateField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=30, blank=True)
    # Times the level was opened again with its item (a dose that closed the item was voided):
    # its messages are then new ones (``notifications.services``). A database default too, so a
    # process still running the previous code can insert escalations during a deploy.
    reopened = models.PositiveSmallIntegerField(default=0, db_default=0)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("escalation")
        ordering = ("-opened_at",)
        constraints = [models.UniqueConstraint(fields=["plan_item", "level"], name="uniq_escalation_item_level")]
        indexes = [
            models.Index(fields=["patient", "resolved_at"], name="escalation_patient_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.level} for {self.plan_item}"


class Appointment(models.Model):
    """A nurse's booked slot for a plan item (usually an injection)."""

    class Status(models.TextChoices):
        BOOKED = "booked", _("Booked")
        CANCELLED = "cancelled", _("Cancelled")
        DONE = "done", _("Done")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    care_team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="appointments")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="appointments")
    plan_item = models.ForeignKey(
        PlanItem, on_delete=models.PROTECT, null=True, blank=True, related_name="appointments"
    )
    nurse = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="appointments"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BOOKED)
    out_of_window_reason = models.TextField(blank=True)
    sequence = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("appointment")
        ordering = ("starts_at",)
        indexes = [
            models.Index(fields=["care_team", "starts_at"], name="appt_team_start_idx"),
            models.Index(fields=["nurse", "starts_at"], name="appt_nurse_start_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.patient} at {self.starts_at:%Y-%m-%d %H:%M}"


from scheduling.models_feeds import CalendarFeed  # noqa: E402,F401
