"""Calendar feeds: secret URLs a calendar client subscribes to (``/ical/<token>.ics``).

Only the SHA-256 of a token is stored, so a database leak gives no working URL. Rotating a
feed replaces the hash (the old URL stops at once); revoking stamps ``revoked_at``. A feed
belongs to one owner: a patient (their plan), a nurse (their appointments) or a care team
(seen by one subscribing staff member, whose membership is checked on every request).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from patients.models import CareTeam, Patient


class CalendarFeed(models.Model):
    class Kind(models.TextChoices):
        PATIENT = "patient", _("Patient")
        NURSE = "nurse", _("Nurse")
        CARE_TEAM = "care_team", _("Care team")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, null=True, blank=True, related_name="calendar_feeds")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="calendar_feeds"
    )
    care_team = models.ForeignKey(
        CareTeam, on_delete=models.PROTECT, null=True, blank=True, related_name="calendar_feeds"
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    precise_titles = models.BooleanField(
        _("precise titles"),
        default=False,
        help_text=_("Show what is due (drug, test) in event titles instead of a neutral title."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    # The hash is left out of the audit trail: history keeps who created, rotated or revoked.
    history = HistoricalRecords(excluded_fields=["token_hash"])

    class Meta:
        verbose_name = _("calendar feed")
        constraints = [
            models.CheckConstraint(
                name="calendar_feed_owner_matches_kind",
                condition=(
                    Q(kind="patient", patient__isnull=False, care_team__isnull=True)
                    | Q(kind="nurse", user__isnull=False, patient__isnull=True, care_team__isnull=True)
                    | Q(kind="care_team", user__isnull=False, care_team__isnull=False, patient__isnull=True)
                ),
            ),
            # One live feed per owner: a second subscription rotates, it does not multiply URLs.
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(kind="patient", revoked_at__isnull=True),
                name="uniq_live_patient_feed",
            ),
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(kind="nurse", revoked_at__isnull=True),
                name="uniq_live_nurse_feed",
            ),
            models.UniqueConstraint(
                fields=["user", "care_team"],
                condition=Q(kind="care_team", revoked_at__isnull=True),
                name="uniq_live_team_feed",
            ),
        ]

    def __str__(self) -> str:
        owner = self.patient or self.care_team or self.user
        return f"{self.get_kind_display()} feed of {owner}"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None
