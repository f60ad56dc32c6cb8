"""Web Push (RFC 8030, payload encrypted per RFC 8291 aes128gcm) with VAPID (RFC 8292).

The row key travels as the ``Topic`` header, so a push service replaces an undelivered copy
instead of queueing a second one. 404 and 410 mean the subscription is gone (permanent).

Per message only what must differ is done (bench/bench_delivery.py): the payload is encrypted
for its subscription (``encrypt``: RFC 8291 from the cryptography primitives, as ``http_ece``
computes it, without its per-call objects) and POSTed on one keep-alive connection per push
service and batch (``http1.KeepAlive``; through a proxy, urllib3's); requests and pywebpush's
``WebPusher`` cost 0.5-1 ms of CPU a message on top, urllib3 itself ~0.3 ms. The VAPID header
is signed once per push service (audience) and reused until an hour before it expires, as
RFC 8292 allows; the environment's proxies and CA bundle (as requests reads them) are read once
per batch instead of on every request.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import certifi
import http_ece  # type: ignore[import-untyped]  # no stubs
import requests
import urllib3
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from pywebpush import Vapid

from .base import Envelope, Transport, TransportError
from .http1 import HttpError, KeepAlive

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
        self.opened = False
        # Per push service: its keep-alive connection, or urllib3's pool through the environment's proxy.
        self.by_origin: dict[str, KeepAlive | urllib3.PoolManager] = {}
        self.ca_certs = ""

    def open(self) -> None:
        _load_key(settings.WEBPUSH_VAPID_PRIVATE_KEY)  # a missing or unreadable key fails the batch early
        # The CA bundle requests would use (its environment variables, else certifi's), read once per batch.
        self.ca_certs = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
        self.by_origin = {}
        self.opened = True

    def close(self) -> None:
        for client in self.by_origin.values():
            if isinstance(client, KeepAlive):
                client.close()
            else:
                client.clear()  # closes the keep-alive connections
        self.by_origin, self.opened = {}, False

    def _client_for(self, origin: str) -> KeepAlive | urllib3.PoolManager:
        """The keep-alive connection to a push service, or urllib3's pool through the environment's proxy for it."""
        if origin not in self.by_origin:
            assert self.opened
            proxies = requests.utils.get_environ_proxies(origin)
            proxy = proxies.get(urlsplit(origin).scheme) or proxies.get("all")
            timeout = float(getattr(settings, "NOTIFY_HTTP_TIMEOUT_SECONDS", 10))
            self.by_origin[origin] = (
                urllib3.ProxyManager(proxy, maxsize=1, ca_certs=self.ca_certs)
                if proxy
                else KeepAlive(origin, ca_certs=self.ca_certs, timeout=timeout)
            )
        return self.by_origin[origin]

    def send(self, message: Envelope) -> str:
        return self.prepare(message)()

    def prepare(self, message: Envelope) -> Callable[[], str]:
        """The payload encrypted and the headers signed, here; the request, in the call."""
        parts = urlsplit(message.to)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            # device_register accepts https (http when allowed) only; a row written otherwise must
            # fail alone, not the batch (the VAPID signer raises its own error on such an origin).
            raise TransportError(f"invalid subscription endpoint: {message.to[:80]!r}", permanent=True)
        origin = f"{parts.scheme}://{parts.netloc}"
        payload = json.dumps(
            {"title": message.push_title, "body": message.push_body, "url": message.url, "tag": message.collapse_id},
            ensure_ascii=False,
        )
        try:
            body = encrypt(payload.encode(), p256dh=message.p256dh, auth=message.auth)
        except (ValueError, IndexError, http_ece.ECEException) as exc:
            # Malformed subscription keys: never reachable.
            raise TransportError(f"invalid subscription: {exc}", permanent=True) from exc
        headers = {
            **vapid_headers(origin),
            "Content-Encoding": "aes128gcm",
            "TTL": str(int(getattr(settings, "NOTIFY_PUSH_TTL_SECONDS", 86_400))),
            "Topic": message.collapse_id,
            "Urgency": "normal",
        }
        return functools.partial(self._post, message, origin, body, headers)

    def _post(self, message: Envelope, origin: str, body: bytes, headers: dict[str, str]) -> str:
        if not self.opened:
            self.open()
        try:
            client = self._client_for(origin)
            if isinstance(client, KeepAlive):
                parts = urlsplit(message.to)
                target = f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"
                answer = client.post(target, headers, body)
                status, answered = answer.status, answer.headers
            else:
                response = client.request(
                    "POST",
                    message.to,
                    body=body,
                    headers=headers,
                    timeout=float(getattr(settings, "NOTIFY_HTTP_TIMEOUT_SECONDS", 10)),
                    retries=False,  # a retry is the outbox's business (backoff, attempts)
                    redirect=False,
                )
                status, answered = response.status, {k.lower(): v for k, v in response.headers.items()}
        except ValueError as exc:
            # An endpoint that cannot go on a request line (a space, a control character, not HTTP): never reachable.
            raise TransportError(f"invalid subscription endpoint: {exc}", permanent=True) from exc
        except (HttpError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransportError(f"push service unreachable: {exc}") from exc
        if status > 202:
            if status in PERMANENT_STATUSES:
                raise TransportError(f"push subscription gone ({status})", permanent=True)
            retry_after = answered.get("retry-after", "")
            raise TransportError(
                f"push service answered {status}",
                retry_after=float(retry_after) if retry_after.isdigit() else None,
            )
        location = answered.get("location", "")
        return str(location or f"webpush:{message.collapse_id}")


RECORD_SIZE = 4096  # http_ece's default, as pywebpush sends it
KEY_INFO = b"WebPush: info\x00"
CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
NONCE_INFO = b"Content-Encoding: nonce\x00\x01"


@functools.lru_cache(maxsize=4096)
def _receiver(p256dh: str) -> tuple[bytes, ec.EllipticCurvePublicKey]:
    """A subscription's public key, as sent (65 bytes) and decoded (a batch's devices repeat)."""
    raw = base64.urlsafe_b64decode(p256dh + "=" * (-len(p256dh) % 4))
    if len(raw) != 65 or raw[0] != 4:
        raise ValueError("p256dh is not an uncompressed P-256 point")
    return raw, ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def encrypt(payload: bytes, *, p256dh: str, auth: str) -> bytes:
    """``payload`` encrypted for one subscription (RFC 8291, aes128gcm), from a fresh ECDH key as it requires.

    RFC 8291 section 3.4 step by step (one record: a push payload is at most 4078 bytes), the
    bytes ``http_ece.encrypt`` writes for the same key and salt (tests/notifications/
    test_delivery_fast_paths.py), with one-shot HMACs instead of its HKDF and cipher objects.
    """
    auth_secret = base64.urlsafe_b64decode(auth + "=" * (-len(auth) % 4))
    ua_public, receiver = _receiver(p256dh)
    private = ec.generate_private_key(ec.SECP256R1())
    if not payload or len(payload) + 17 > RECORD_SIZE:  # no record, or more than one: http_ece's general case
        return bytes(
            http_ece.encrypt(payload, private_key=private, dh=ua_public, auth_secret=auth_secret, version="aes128gcm")
        )
    as_public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    ecdh_secret = private.exchange(ec.ECDH(), receiver)
    salt = os.urandom(16)
    # HKDF (RFC 5869) with one block of output each: extract, then expand with the info and 0x01.
    prk_key = hmac.digest(auth_secret, ecdh_secret, "sha256")
    ikm = hmac.digest(prk_key, KEY_INFO + ua_public + as_public + b"\x01", "sha256")
    prk = hmac.digest(salt, ikm, "sha256")
    cek = hmac.digest(prk, CEK_INFO, "sha256")[:16]
    nonce = hmac.digest(prk, NONCE_INFO, "sha256")[:12]
    record = AESGCM(cek).encrypt(nonce, payload + b"\x02", None)  # 0x02: the last record's delimiter, no padding
    return salt + struct.pack("!LB", RECORD_SIZE, len(as_public)) + as_public + record
