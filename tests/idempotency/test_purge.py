"""Expired idempotency keys are forgotten by the daily beat task; fresh ones are kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from idempotency.models import IdempotencyRecord
from idempotency.tasks import idempotency_purge
from patients.models import User

pytestmark = pytest.mark.django_db


def test_daily_purge_forgets_only_expired_keys() -> None:
    user = User.objects.create_user("retry@example.org", "pw-retry-123")
    common = {
        "user": user,
        "method": "POST",
        "path": "/api/v1/me/vitamin-d-doses",
        "request_hash": "0" * 64,
        "status_code": 201,
        "response_body": {},
    }
    old = IdempotencyRecord.objects.create(key="old", **common)
    fresh = IdempotencyRecord.objects.create(key="fresh", **common)
    IdempotencyRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_purge() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]
    assert fresh.pk
    assert "idempotency-purge" in settings.CELERY_BEAT_SCHEDULE
