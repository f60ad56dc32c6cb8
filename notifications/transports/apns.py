"""Apple Push Notification service over its HTTP API (``APNS_ENDPOINT``), token-based auth (ES256).

The row key travels as ``apns-collapse-id`` and, as a UUID, as ``apns-id``. 410 (Unregistered)
and 400 BadDeviceToken are permanent: the device is deactivated.

Apple's production service speaks HTTP/2 only; ``requests`` speaks HTTP/1.1, which the loopback
test server and HTTP/1.1-capable gateways accept. Production needs an HTTP/2 client
(``httpx[http2]``), a dependency the project has not pinned yet.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import requests
from django.conf import settings

from .base import Envelope, Transport, TransportError

PERMANENT_REASONS = frozenset({"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"})

_jwt_lock = threading.Lock()
_jwt_cache: dict[str, tuple[str, float]] = {}


def _provider_token() -> str:
    """An ES256 provider token, renewed every 50 minutes (Apple refuses one older than an hour)."""
    key_file = settings.APNS_KEY_FILE
    if not key_file:
        raise TransportError("APNS_KEY_FILE is not set")
    with _jwt_lock:
        cached = _jwt_cache.get(key_file)
        if cached and cached[1] > time.time():
            return cached[0]
        now = int(time.time())
        token = jwt.encode(
            {"iss": settings.APNS_TEAM_ID, "iat": now},
            Path(key_file).read_text(encoding="utf-8"),
            algorithm="ES256",
            headers={"kid": settings.APNS_KEY_ID},
        )
        _jwt_cache[key_file] = (token, now + 50 * 60)
        return token


class ApnsTransport(Transport):
    channel = "apns"

    def __init__(self) -> None:
        self.session: requests.Session | None = None

    def open(self) -> None:
        self.session = requests.Session()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None

    def send(self, message: Envelope) -> str:
        if self.session is None:
            self.open()
        assert self.session is not None
        apns_id = str(uuid.UUID(hex=message.key[:32]))
        payload: dict[str, Any] = {
            "aps": {"alert": {"title": message.push_title, "body": message.push_body}, "sound": "default"},
            "url": message.url,
        }
        try:
            response = self.session.post(
                f"{settings.APNS_ENDPOINT.rstrip('/')}/3/device/{message.to}",
                json=payload,
                headers={
                    "authorization": f"bearer {_provider_token()}",
                    "apns-topic": settings.APNS_TOPIC,
                    "apns-push-type": "alert",
                    "apns-priority": "10",
                    "apns-id": apns_id,
                    "apns-collapse-id": message.collapse_id,
                    "apns-expiration": str(
                        int(time.time()) + int(getattr(settings, "NOTIFY_PUSH_TTL_SECONDS", 86_400))
                    ),
                },
                timeout=float(getattr(settings, "NOTIFY_HTTP_TIMEOUT_SECONDS", 10)),
            )
        except requests.RequestException as exc:
            raise TransportError(f"APNs unreachable: {exc}") from exc
        if response.status_code == 200:
            return str(response.headers.get("apns-id", apns_id))
        try:
            reason = str(response.json().get("reason", ""))
        except ValueError:
            reason = ""
        if response.status_code == 410 or (response.status_code == 400 and reason in PERMANENT_REASONS):
            raise TransportError(f"APNs token rejected: {response.status_code} {reason}", permanent=True)
        retry_after = response.headers.get("Retry-After")
        raise TransportError(
            f"APNs answered {response.status_code} {reason}",
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
