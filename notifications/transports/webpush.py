"""Web Push (RFC 8030, payload encrypted per RFC 8291 aes128gcm) with VAPID (RFC 8292), via pywebpush.

The row key travels as the ``Topic`` header, so a push service replaces an undelivered copy
instead of queueing a second one. 404 and 410 mean the subscription is gone (permanent).
"""

from __future__ import annotations

import json
from typing import Any

import requests
from django.conf import settings
from pywebpush import Vapid, WebPushException, webpush

from .base import Envelope, Transport, TransportError

PERMANENT_STATUSES = frozenset({400, 403, 404, 410, 413})


class WebPushTransport(Transport):
    channel = "webpush"

    def __init__(self) -> None:
        self.session: requests.Session | None = None
        self.vapid: Any = None

    def open(self) -> None:
        self.session = requests.Session()
        key = settings.WEBPUSH_VAPID_PRIVATE_KEY
        if not key:
            raise TransportError("WEBPUSH_VAPID_PRIVATE_KEY is not set")
        self.vapid = Vapid.from_file(key) if key.endswith(".pem") else Vapid.from_string(private_key=key)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None

    def send(self, message: Envelope) -> str:
        if self.session is None:
            self.open()
        payload = json.dumps(
            {"title": message.push_title, "body": message.push_body, "url": message.url, "tag": message.collapse_id},
            ensure_ascii=False,
        )
        try:
            response = webpush(
                subscription_info={"endpoint": message.to, "keys": {"p256dh": message.p256dh, "auth": message.auth}},
                data=payload,
                vapid_private_key=self.vapid,
                vapid_claims={"sub": settings.WEBPUSH_VAPID_SUBJECT},  # a fresh dict: webpush() adds aud and exp
                ttl=int(getattr(settings, "NOTIFY_PUSH_TTL_SECONDS", 86_400)),
                timeout=float(getattr(settings, "NOTIFY_HTTP_TIMEOUT_SECONDS", 10)),
                headers={"Topic": message.collapse_id, "Urgency": "normal"},
                requests_session=self.session,
            )
        except WebPushException as exc:
            status = getattr(exc.response, "status_code", None)
            if status in PERMANENT_STATUSES:
                raise TransportError(f"push subscription gone ({status})", permanent=True) from exc
            retry_after = getattr(exc, "retry_after", None)
            raise TransportError(f"push service answered {status}", retry_after=retry_after) from exc
        except (requests.RequestException, OSError) as exc:
            raise TransportError(f"push service unreachable: {exc}") from exc
        except ValueError as exc:  # malformed subscription keys: the device can never be reached
            raise TransportError(f"invalid subscription: {exc}", permanent=True) from exc
        location = getattr(response, "headers", {}).get("Location", "")
        return str(location or f"webpush:{message.collapse_id}")
