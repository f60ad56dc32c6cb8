"""Test-only URLconf: ``/api/v1/me/plan`` and ``/me/booklet`` answered by DRF's dispatch alone
(no ``backend.polled`` lean path), to compare both paths' answers (tests/api/test_polled.py)."""

from __future__ import annotations

from typing import Any

from django.urls import include, path
from rest_framework.views import APIView

from patients.api import MeBookletView
from scheduling.api import MePlanView


def drf_only(view_class: type[APIView]) -> Any:
    """``APIView.as_view`` for ``view_class``, without ``PolledGetView``'s lean ``GET``."""
    return APIView.as_view.__func__(view_class)  # type: ignore[attr-defined]  # the classmethod's function


urlpatterns = [
    path("api/v1/me/plan", drf_only(MePlanView)),
    path("api/v1/me/booklet", drf_only(MeBookletView)),
    path("", include("backend.urls")),
]
