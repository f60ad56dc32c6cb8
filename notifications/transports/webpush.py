"""Web Push (RFC 8030, payload encrypted per RFC 8291 aes128gcm) with VAPID (RFC 8292), via pywebpush.

The row key travels as the ``Topic`` header, so a push service replaces an undelivered copy
instead of queueing a second one. 404 and 410 mean the subscription is gone (permanent).

Per message only what must differ is done (bench/bench_delivery.py): the payload is encrypted
for its subscription, on one keep-alive session per batch. The VAPID header is signed once per
push service (audience) and reused until an hour before it expires, as RFC 8292 allows; the
environment's proxies and CA bundle are read once per batch instead of on every request.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from pywebpush import Vapid, WebPusher, WebPushException

from .base import Envelope, Transport, TransportError

PERMANENT_STATUSES = frozenset({400, 403, 404, 410, 413})
VAPID_LIFETIME_SECONDS = 12 * 3600  # pywebpush's own choice; push services refuse more than 24 h
VAPID_RENEW_SECONDS = 3600  # sign again when less than this is left

_vapid_lock = threading.Lock()
_vapid_cache: dict[tuple[str, str, str], tuple[dict[str, str], float]] = {}


def _load_key(key: str) -> Any:
    if not key:
        raise TransportError("WEBPUSH_VAPID_PRIVATE_KEY is not set")
    return Vapid.from_file(key) if key.endswith(".pem") else Vapid.from_string(private_key=key)


def vapid_headers(audience: str) -> dict[str, str]:
    """The ``Authorization`` header for ``audience`` (a push service's origin), signed at most hourly."""
    key, subject = settings.WEBPUSH_VAPID_PRIVATE_KEY, settings.WEBPUSH_VAPID_SUBJECT
    now = time.time()
    with _vapid_lock:
        cached = _vapid_cache.get((key, subject, audience))
        if cached and cached[1] - now > VAPID_RENEW_SECONDS:
            return cached[0]
        expires = int(now) + VAPID_LIFETIME_SECONDS
        headers = {k: str(v) for k, v in _load_key(key).sign({"sub": subject, "aud": audience, "exp": expires}).items()}
        _vapid_cache[(key, subject, audience)] = (headers, expires)
        return headers


class WebPushTransport(Transport):
    channel = "webpush"

    def __init__(self) -> None:
        self.session: requests.Session | None = None
        self.proxies: dict[str, dict[str, str]] = {}

    def open(self) -> None:
        _load_key(settings.WEBPUSH_VAPID_PRIVATE_KEY)  # a missing or unreadable key fails the batch early
        self.session = requests.Session()
        # requests re-reads the environment (proxies, netrc, CA bundle) on every request when
        # trust_env is on; read it here once, per push service below.
        self.session.trust_env = False
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.proxies = {}

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None

    def _proxies_for(self, origin: str) -> dict[str, str]:
        if origin not in self.proxies:
            self.proxies[origin] = requests.utils.get_environ_proxies(origin)
        return self.proxies[origin]

    def send(self, message: Envelope) -> str:
        if self.session is None:
            self.open()
        assert self.session is not None
        parts = urlsplit(message.to)
        origin = f"{parts.scheme}://{parts.netloc}"
        payload = json.dumps(
            {"title": message.push_title, "body": message.push_body, "url": message.url, "tag": message.collapse_id},
            ensure_ascii=False,
        )
        try:
            self.session.proxies = self._proxies_for(origin)
            pusher = WebPusher(
                {"endpoint": message.to, "keys": {"p256dh": message.p256dh, "auth": message.auth}},
                requests_session=self.session,
            )
            response: Any = pusher.send(
                payload,
                {**vapid_headers(origin), "Topic": message.collapse_id, "Urgency": "normal"},
                ttl=int(getattr(settings, "NOTIFY_PUSH_TTL_SECONDS", 86_400)),
                content_encoding="aes128gcm",
                timeout=float(getattr(settings, "NOTIFY_HTTP_TIMEOUT_SECONDS", 10)),
            )
        except (requests.RequestException, OSError) as exc:
            raise TransportError(f"push service unreachable: {exc}") from exc
        except (ValueError, IndexError, WebPushException) as exc:
            # Malformed subscription keys (pywebpush checks them before any request): never reachable.
            raise TransportError(f"invalid subscription: {exc}", permanent=True) from exc
        status = response.status_code
        if status > 202:
            if status in PERMANENT_STATUSES:
                raise TransportError(f"push subscription gone ({status})", permanent=True)
            retry_after = response.headers.get("Retry-After", "")
            raise TransportError(
                f"push service answered {status}",
                retry_after=float(retry_after) if retry_after.isdigit() else None,
            )
        location = response.headers.get("Location", "")
        return str(location or f"webpush:{message.collapse_id}")
