"""Reads of the outbox: the health summary, a patient's messages, what is claimable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from notifications.models import OutboxMessage, OutboxState, SweepRun


def outbox_health(*, now: datetime | None = None) -> dict[str, Any]:
    """Counts by state, the lag of the oldest due-but-unsent message, the last sweep.

    ``healthy`` is false when no sweep ran for ``NOTIFY_HEALTH_MAX_SWEEP_AGE_SECONDS`` (beat or
    the workers are down) or when the lag passes ``NOTIFY_HEALTH_MAX_LAG_SECONDS``.
    """
    moment = now or timezone.now()
    counts = {state.value: 0 for state in OutboxState}
    for row in OutboxMessage.objects.values("state").annotate(n=Count("pk")):
        counts[row["state"]] = row["n"]
    unsent = OutboxMessage.objects.filter(state__in=[OutboxState.PENDING, OutboxState.SENDING], send_at__lte=moment)
    oldest = unsent.aggregate(oldest=Min("send_at"))["oldest"]
    due_unsent = unsent.count()
    lag = max(0.0, (moment - oldest).total_seconds()) if oldest else 0.0
    sweep = SweepRun.objects.filter(name="outbox").first()
    last = sweep.last_started_at if sweep else None
    sweep_age = (moment - last).total_seconds() if last else None
    max_age = float(getattr(settings, "NOTIFY_HEALTH_MAX_SWEEP_AGE_SECONDS", 180))
    max_lag = float(getattr(settings, "NOTIFY_HEALTH_MAX_LAG_SECONDS", 900))
    healthy = sweep_age is not None and sweep_age <= max_age and lag <= max_lag
    return {
        "healthy": healthy,
        "now": moment.isoformat(),
        "counts": counts,
        "due_unsent": due_unsent,
        "oldest_due_unsent_at": oldest.isoformat() if oldest else None,
        "lag_seconds": round(lag, 1),
        "last_sweep_at": last.isoformat() if last else None,
        "last_sweep_finished_at": sweep.last_finished_at.isoformat() if sweep and sweep.last_finished_at else None,
        "last_sweep_age_seconds": round(sweep_age, 1) if sweep_age is not None else None,
        "last_sweep_claimed": sweep.last_claimed if sweep else 0,
        "last_sweep_sent": sweep.last_sent if sweep else 0,
    }
