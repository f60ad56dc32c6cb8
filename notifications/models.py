"""Reminders and alerts as an outbox: one row per message, recipient, channel and send time.

The database holds ``send_at``; a sweep run by Celery beat every minute claims due rows with a
lease and hands them to the transports. Each row's ``key`` is unique for its patient (a hash of
the plan item key, its version, the offset, the channel and the recipient), so re-planning never
sends twice and a moved or closed item cancels its pending rows. Every state change is audited
(django-simple-history), and nothing here is ever deleted.
"""

from __future__ import annotations

import uuid
from datetime import time

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from patients.models import Language, Patient
from scheduling.models import Escalation, PlanItem


class Channel(models.TextChoices):
    EMAIL = "email", _("Email")
    WEBPUSH = "webpush", _("Web Push")
    FCM = "fcm", _("Firebase Cloud Messaging")
    APNS = "apns", _("Apple Push Notification service")


PUSH_CHANNELS = (Channel.WEBPUSH, Channel.FCM, Channel.APNS)


class NotificationPreference(models.Model):
    """How one person wants to be reached: channels, time of day, quiet hours, language.

    A patient's local dates and times are in ``Patient.timezone``; a staff member's in their
    care team's. Without a row, the defaults apply (every consented channel, 09:00, TIME-04).
    """

    patient = models.OneToOneField(
        Patient, on_delete=models.CASCADE, null=True, blank=True, related_name="notification_preference"
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notification_preference",
    )
    channels = models.JSONField(_("channels"), default=list, blank=True)
    time_of_day = models.TimeField(_("preferred time of day"), default=time(9, 0))
    quiet_start = models.TimeField(_("quiet hours from"), null=True, blank=True)
    quiet_end = models.TimeField(_("quiet hours until"), null=True, blank=True)
    language = models.CharField(_("language"), max_length=2, choices=Language.choices, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("notification preference")
        constraints = [
            models.CheckConstraint(
                condition=(Q(patient__isnull=False) & Q(user__isnull=True))
                | (Q(patient__isnull=True) & Q(user__isnull=False)),
                name="notification_pref_one_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"Preferences of {self.patient or self.user}"


class Device(models.Model):
    """A push destination: a Web Push subscription, an FCM registration token or an APNs token."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, null=True, blank=True, related_name="devices")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="devices"
    )
    channel = models.CharField(_("channel"), max_length=10, choices=[(c.value, c.label) for c in PUSH_CHANNELS])
    # Web Push: the subscription endpoint; FCM / APNs: the registration or device token.
    endpoint = models.TextField(_("endpoint or token"))
    p256dh = models.CharField(_("Web Push p256dh key"), max_length=200, blank=True)
    auth = models.CharField(_("Web Push auth secret"), max_length=100, blank=True)
    active = models.BooleanField(_("active"), default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivation_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("push device")
        constraints = [
            models.UniqueConstraint(fields=["channel", "endpoint"], name="uniq_device_channel_endpoint"),
        ]
        indexes = [models.Index(fields=["patient", "active"], name="device_patient_active_idx")]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} device {self.public_id}"


class SuppressedAddress(models.Model):
    """An email address that bounced permanently: never written to again until cleared."""

    email = models.EmailField(unique=True)
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("suppressed email address")
        verbose_name_plural = _("suppressed email addresses")

    def __str__(self) -> str:
        return self.email


class OutboxState(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending (claimed)")
    SENT = "sent", _("Sent")
    CANCELLED = "cancelled", _("Cancelled")
    DEAD = "dead", _("Dead (gave up)")
    DIGESTED = "digested", _("Folded into a digest")


class MessageKind(models.TextChoices):
    REMINDER = "reminder", _("Reminder of a plan item")
    ESCALATION = "escalation", _("Escalation")
    DIGEST = "digest", _("Daily staff digest")
    UNDELIVERABLE = "undeliverable", _("Undeliverable reminder, to staff")


class OutboxMessage(models.Model):
    """One message to one recipient on one channel at one ``send_at``."""

    # The message's identity (a hash: ``policy.idempotency_key``), written once. Unique per patient
    # (``outbox_patient_key_uniq``, and by itself for the staff rows without one): an index led by
    # the patient keeps a re-plan batch's new keys on neighbouring pages, where a unique index on
    # the hash alone put each insert, cancel and outcome on a random page of a 3.4 GB index at a
    # million patients (docs/benchmarks.md, re-planning item 19).
    key = models.CharField(_("idempotency key"), max_length=64)
    kind = models.CharField(max_length=16, choices=MessageKind.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    state = models.CharField(max_length=10, choices=OutboxState.choices, default=OutboxState.PENDING)
    # The patient the message is about; the recipient is that patient unless ``recipient_user``.
    # Foreign keys that are mostly NULL have partial indexes (Meta), and the patient's is the
    # prefix of outbox_patient_state_idx: every index is written again by each claim and outcome.
    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, null=True, blank=True, related_name="outbox", db_index=False
    )
    recipient_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="outbox",
        db_index=False,
    )
    device = models.ForeignKey(
        Device, on_delete=models.PROTECT, null=True, blank=True, related_name="outbox", db_index=False
    )
    plan_item = models.ForeignKey(PlanItem, on_delete=models.PROTECT, null=True, blank=True, related_name="outbox")
    item_version = models.PositiveIntegerField(null=True, blank=True)
    offset_days = models.IntegerField(null=True, blank=True)
    escalation = models.ForeignKey(
        Escalation, on_delete=models.PROTECT, null=True, blank=True, related_name="outbox", db_index=False
    )
    repeat = models.PositiveSmallIntegerField(default=0)
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.FR)
    context = models.JSONField(default=dict, blank=True)
    send_at = models.DateTimeField(_("send at"))
    # When the row may next be claimed: ``send_at`` at first, later the retry time.
    next_attempt_at = models.DateTimeField()
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    provider_id = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.CharField(max_length=40, blank=True)
    digest = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="folded", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Every outcome writes an audit row, so each index of the history table is written per message
    # sent. Its readers look a message's entries up by ``id`` (the admin's history page,
    # ``row.history``); nothing looks entries up by key or by foreign key (they are copies without
    # constraints), so those indexes (simple-history adds one per foreign key and two for the
    # key) are left out. The primary key, ``id``, ``history_date`` and ``history_user`` stay.
    history = HistoricalRecords(
        no_db_index=["key", "patient", "recipient_user", "device", "plan_item", "escalation", "digest"]
    )

    class Meta:
        verbose_name = _("outbox message")
        ordering = ("send_at", "pk")
        indexes = [
            # The sweep's claim: due rows in claim order (by device within a due time; no NULL, so
            # a claim can start after the last key the previous one took). Only pending rows.
            models.Index(
                F("next_attempt_at"),
                Coalesce("device", Value(0), output_field=models.BigIntegerField()),
                F("id"),
                name="outbox_due_idx",
                condition=Q(state="pending"),
            ),
            # Expired leases (a crashed sender's rows), found without walking the due rows.
            models.Index(
                fields=["claimed_until"],
                name="outbox_lease_idx",
                condition=Q(state="sending"),
            ),
            models.Index(fields=["patient", "state"], name="outbox_patient_state_idx"),
            models.Index(fields=["state", "send_at"], name="outbox_state_send_at_idx"),
            models.Index(fields=["device"], name="outbox_device_idx", condition=Q(device__isnull=False)),
            models.Index(
                fields=["recipient_user"], name="outbox_recipient_idx", condition=Q(recipient_user__isnull=False)
            ),
            # The sweep's digest fold: due staff alerts by recipient and channel, index-only.
            models.Index(
                fields=["next_attempt_at"],
                include=["recipient_user", "channel"],
                name="outbox_staff_due_idx",
                condition=Q(kind="escalation", state="pending", recipient_user__isnull=False),
            ),
            models.Index(fields=["escalation"], name="outbox_escalation_idx", condition=Q(escalation__isnull=False)),
            models.Index(fields=["digest"], name="outbox_digest_idx", condition=Q(digest__isnull=False)),
        ]
        constraints = [
            # The key of a patient's message is unique among that patient's; a key is a hash of
            # the message's parts, the patient's item or escalation among them, so no two
            # patients' keys meet. ``create_rows`` skips a row that conflicts with either.
            models.UniqueConstraint(fields=["patient", "key"], name="outbox_patient_key_uniq"),
            # Staff rows without a patient (the daily digests) are unique by key alone.
            models.UniqueConstraint(fields=["key"], condition=Q(patient__isnull=True), name="outbox_staff_key_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} by {self.channel} at {self.send_at:%Y-%m-%d %H:%M}Z ({self.state})"


class SweepRun(models.Model):
    """When a sweep last started and finished (one row per sweep name), for the health check."""

    name = models.CharField(max_length=40, unique=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_claimed = models.PositiveIntegerField(default=0)
    last_sent = models.PositiveIntegerField(default=0)
    runs = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = _("sweep run")

    def __str__(self) -> str:
        return f"{self.name} sweep, last at {self.last_started_at}"
