"""What a message says, per kind and language: neutral texts only.

A lock screen or an inbox preview may be read by anyone: no subject, push title or push body
names a drug, a dose or a diagnosis. Email bodies say what kind of step is near and link to the
app; the details appear after login (DESIGN.md "Boundaries").
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.template.loader import render_to_string

from notifications.models import MessageKind, OutboxMessage
from notifications.transports.base import Envelope

SUBJECTS: dict[str, dict[str, str]] = {
    "reminder": {"fr": "Carnet : une étape de soin est prévue", "en": "Carnet: a care step is due"},
    "overdue": {"fr": "Carnet : une étape de soin est en retard", "en": "Carnet: a care step is overdue"},
    "staff_alert": {"fr": "Carnet : une alerte demande votre attention", "en": "Carnet: an alert needs your attention"},
    "digest": {"fr": "Carnet : résumé quotidien des alertes", "en": "Carnet: daily alert digest"},
    "undeliverable": {
        "fr": "Carnet : un rappel n'a pas pu être remis",
        "en": "Carnet: a reminder could not be delivered",
    },
}
PUSH_BODY = {
    "fr": "Carnet : une étape de soin est prévue — ouvrez l'application",
    "en": "Carnet: a care step is due — open the app",
}
PUSH_TITLE = "Carnet"


def template_for(row: OutboxMessage) -> str:
    if row.kind == MessageKind.REMINDER:
        return "reminder"
    if row.kind == MessageKind.ESCALATION:
        return "staff_alert" if row.recipient_user_id else "overdue"
    if row.kind == MessageKind.DIGEST:
        return "digest"
    return "undeliverable"


def _url(row: OutboxMessage) -> str:
    base = settings.SITE_URL.rstrip("/")
    if row.recipient_user_id:
        return f"{base}/worklist/"
    return f"{base}/app/"


def envelope(row: OutboxMessage, *, to: str, first_name: str = "", p256dh: str = "", auth: str = "") -> Envelope:
    """The envelope a transport sends for ``row`` to ``to`` (address, endpoint or token)."""
    language = row.language if row.language in ("fr", "en") else "fr"
    name = template_for(row)
    context: dict[str, Any] = {
        **row.context,
        "first_name": first_name,
        "url": _url(row),
        "offset_days": row.offset_days,
        "days_before": -(row.offset_days or 0),
        "repeat": row.repeat,
    }
    subject = SUBJECTS[name][language]
    text = html = ""
    if row.channel == "email":
        text = render_to_string(f"notifications/email/{name}.{language}.txt", context)
        html = render_to_string(f"notifications/email/{name}.{language}.html", context)
    return Envelope(
        key=row.key,
        channel=row.channel,
        to=to,
        language=language,
        subject=subject,
        text=text,
        html=html,
        push_title=PUSH_TITLE,
        push_body=PUSH_BODY[language],
        url=context["url"],
        data={"message": row.key[:32]},
        p256dh=p256dh,
        auth=auth,
    )
