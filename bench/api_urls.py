"""Bench-only URLconf: the production routes plus ``/bench/bare``, a bare Django JSON view (the reference)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def bare(request: HttpRequest) -> JsonResponse:
    """What Django alone costs for a small JSON answer: no auth, no database, no serializer."""
    return JsonResponse({"items": [{"kind": "injection", "due": "2027-01-01", "status": "scheduled"}]})


urlpatterns = [
    path("bench/bare", bare),
    path("", include("backend.urls")),
]
