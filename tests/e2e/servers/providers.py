"""Loopback fakes of FCM HTTP v1 (with its OAuth token endpoint) and of the APNs HTTP API.

They check what the real services check that matters here (bearer token, JWT signature,
headers carrying the collapse id) and answer like them for unknown tokens.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

from .smtp import free_port


class _Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def start(self) -> Any:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, out = server.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


class FcmServer(_Server):
    """``/token`` (JWT-bearer grant) and ``/v1/projects/<p>/messages:send``."""

    def __init__(self, service_account_public_pem: bytes, project: str = "carnet-test") -> None:
        super().__init__()
        self.public_pem = service_account_public_pem
        self.project = project
        self.access_token = "fcm-access-token-123"
        self.unregistered: set[str] = set()
        self.token_grants = 0

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/token":
            from urllib.parse import parse_qs

            form = parse_qs(body.decode())
            claims = jwt.decode(
                form["assertion"][0], self.public_pem, algorithms=["RS256"], audience=f"{self.origin}/token"
            )
            assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
            self.token_grants += 1
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"access_token": self.access_token, "expires_in": 3600, "token_type": "Bearer"}).encode(),
            )
        if path != f"/v1/projects/{self.project}/messages:send":
            return 404, {}, b"{}"
        if headers.get("authorization") != f"Bearer {self.access_token}":
            return 401, {}, b'{"error": {"status": "UNAUTHENTICATED"}}'
        message = json.loads(body)["message"]
        if message["token"] in self.unregistered:
            error = {
                "error": {
                    "code": 404,
                    "status": "NOT_FOUND",
                    "details": [
                        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
                    ],
                }
            }
            return 404, {"Content-Type": "application/json"}, json.dumps(error).encode()
        with self.lock:
            self.received.append(message)
            n = len(self.received)
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"name": f"projects/{self.project}/messages/{n}"}).encode(),
        )


class ApnsServer(_Server):
    """``/3/device/<token>`` with an ES256 provider token."""

    def __init__(self, public_pem: bytes, team_id: str, topic: str) -> None:
        super().__init__()
        self.public_pem = public_pem
        self.team_id = team_id
        self.topic = topic
        self.unregistered: set[str] = set()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        token = path.rsplit("/", 1)[-1]
        auth = headers.get("authorization", "")
        try:
            claims = jwt.decode(auth.removeprefix("bearer "), self.public_pem, algorithms=["ES256"])
        except jwt.PyJWTError:
            return 403, {}, b'{"reason": "InvalidProviderToken"}'
        if claims.get("iss") != self.team_id or headers.get("apns-topic") != self.topic:
            return 400, {}, b'{"reason": "TopicDisallowed"}'
        if token in self.unregistered:
            return 410, {}, b'{"reason": "Unregistered", "timestamp": 1700000000000}'
        with self.lock:
            self.received.append({"token": token, "headers": headers, "payload": json.loads(body)})
        return 200, {"apns-id": headers.get("apns-id", "")}, b""
