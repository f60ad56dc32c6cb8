"""A loopback Web Push endpoint that checks VAPID and DECRYPTS what it receives (RFC 8291).

Subscriptions are made here: each has its own P-256 key pair and auth secret, as a browser
would. A push is accepted only with a valid ``vapid t=…, k=…`` Authorization (ES256 JWT whose
``aud`` is this origin, ``exp`` in the future, ``sub`` present, signed by ``k``), an
``aes128gcm`` body that decrypts with the subscription's keys, and a TTL header. Endpoints
can be made to answer 410 Gone, or the whole server to answer 503.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .smtp import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Subscription:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth_secret = os.urandom(16)

    @property
    def p256dh(self) -> str:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(raw)

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)


class PushServer:
    def __init__(self, vapid_public_key: str) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.vapid_public_key = vapid_public_key  # base64url uncompressed point, as the app registered it
        self.subscriptions: dict[str, Subscription] = {}
        self.received: list[dict[str, Any]] = []
        self.rejected: list[tuple[str, int, str]] = []
        self.gone: set[str] = set()
        # VAPID tokens whose signature checked out, with their claims: a sender reuses one token for
        # hours (RFC 8292 allows it) and its signature check was a quarter of this server's CPU per
        # push. Only the key registered here signs them (``k`` is checked first); expiry is checked
        # on every push.
        self.verified: dict[str, dict[str, Any]] = {}
        self.unavailable = False
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    def subscribe(self, name: str | None = None) -> Subscription:
        path = f"/push/{name or b64url(os.urandom(9))}"
        sub = Subscription(self.origin + path)
        self.subscriptions[path] = sub
        return sub

    def start(self) -> PushServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, reason = server.handle(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                if status == 201:
                    self.send_header("Location", f"{server.origin}/msg/{len(server.received)}")
                self.send_header("Content-Length", str(len(reason)))
                self.end_headers()
                self.wfile.write(reason.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def _reject(self, path: str, status: int, reason: str) -> tuple[int, str]:
        with self.lock:
            self.rejected.append((path, status, reason))
        return status, reason

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        headers = {k.lower(): v for k, v in headers.items()}
        if self.unavailable:
            return self._reject(path, 503, "unavailable")
        sub = self.subscriptions.get(path)
        if sub is None:
            return self._reject(path, 404, "no such subscription")
        if path in self.gone:
            return self._reject(path, 410, "subscription expired")
        auth = headers.get("authorization", "")
        if not auth.startswith("vapid "):
            return self._reject(path, 401, "no VAPID authorization")
        parts = dict(p.strip().split("=", 1) for p in auth[len("vapid ") :].split(","))
        if parts.get("k") != self.vapid_public_key:
            return self._reject(path, 403, "unknown VAPID key")
        claims = self.verified.get(parts["t"])
        if claims is None:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
            try:
                claims = jwt.decode(parts["t"], public, algorithms=["ES256"], audience=self.origin)
            except jwt.PyJWTError as exc:
                return self._reject(path, 403, f"bad VAPID token: {exc}")
            with self.lock:
                self.verified[parts["t"]] = claims
        if not claims.get("sub") or claims["exp"] < time.time() or claims["exp"] > time.time() + 24 * 3600:
            return self._reject(path, 403, "bad VAPID claims")
        if headers.get("content-encoding") != "aes128gcm" or "ttl" not in headers:
            return self._reject(path, 400, "missing aes128gcm encoding or TTL")
        try:
            plain = http_ece.decrypt(
                body, private_key=sub.private_key, auth_secret=sub.auth_secret, version="aes128gcm"
            )
        except Exception as exc:
            return self._reject(path, 400, f"cannot decrypt: {exc}")
        payload = json.loads(plain)
        with self.lock:
            self.received.append(
                {"path": path, "topic": headers.get("topic"), "payload": payload, "urgency": headers.get("urgency")}
            )
        return 201, ""

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def topics(self) -> Counter[str]:
        with self.lock:
            return Counter(f"{r['path']}|{r['topic']}" for r in self.received)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.topics().values() if n > 1)
