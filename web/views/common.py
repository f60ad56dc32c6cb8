"""Small helpers the nurse views share."""

from __future__ import annotations

from datetime import date, datetime, time

from django.http import HttpRequest
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language

from web.scope import Scope


def team_today(scope: Scope) -> date:
    """TIME-01: today in the current team's time zone."""
    return timezone.localdate(timezone=scope.tz)


def parse_day(value: str | None, default: date) -> date:
    try:
        return date.fromisoformat(value) if value else default
    except ValueError:
        return default


def local_instant(day: date, at: time, scope: Scope) -> datetime:
    return datetime.combine(day, at, tzinfo=scope.tz)


def lang() -> str:
    code = (get_language() or "fr")[:2]
    return code if code in ("fr", "en") else "fr"


def safe_next(request: HttpRequest, fallback: str) -> str:
    nxt = request.POST.get("next") or request.GET.get("next") or ""
    if nxt and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}):
        return nxt
    return fallback
