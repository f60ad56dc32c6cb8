"""Labels for the rules' codes in the reader's language, and small display helpers."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from patients.models import Protocol
from scheduling.models import ItemKind, ItemStatus

register = template.Library()


@register.filter
def protocol_label(code: str) -> str:
    try:
        return str(Protocol(code).label)
    except ValueError:
        return code or "—"


@register.filter
def kind_label(code: str) -> str:
    try:
        return str(ItemKind(code).label)
    except ValueError:
        return code


@register.filter
def status_label(code: str) -> str:
    try:
        return str(ItemStatus(code).label)
    except ValueError:
        return code


@register.filter
def status_class(code: str) -> str:
    if code.startswith("overdue"):
        return "st-overdue"
    return {"blocked": "st-blocked", "due": "st-due", "window_open": "st-open", "done": "st-done"}.get(code, "st-plain")


@register.filter
def isodate(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


@register.filter
def person(user: Any) -> str:
    if user is None:
        return "—"
    return str(user.get_full_name() or user.email)


@register.filter
def severity_label(code: str) -> str:
    return {"I": _("information"), "W": _("warning"), "H": _("high"), "C": _("critical")}.get(code, code)


@register.simple_tag(takes_context=True)
def nav_current(context: Any, name: str) -> SafeString:
    match = getattr(context.get("request"), "resolver_match", None)
    return mark_safe('aria-current="page"' if match is not None and match.url_name == name else "")  # noqa: S308  # constant


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    return mapping.get(key, []) if mapping is not None else []
