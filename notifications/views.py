"""The outbox health endpoint: counts only, no patient data, so monitors can read it without login."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from notifications.selectors import outbox_health


@never_cache
@require_GET
def health_outbox(request: HttpRequest) -> JsonResponse:
    """200 when sweeps run and the lag is small, 503 otherwise (a monitor alerts on the status)."""
    body = outbox_health()
    return JsonResponse(body, status=200 if body["healthy"] else 503)
