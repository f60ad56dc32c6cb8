"""Firebase Cloud Messaging HTTP v1 (``FCM_ENDPOINT``), OAuth 2 from a service-account file.

The access token comes from the service account's ``token_uri`` with a signed JWT grant
(RS256), cached until shortly before it expires; ``FCM_ACCESS_TOKEN`` may give one directly.
The row key travels as Android's ``collapse_key`` and APNs' ``apns-collapse-id``. An
``UNREGISTERED`` or invalid token is permanent: the device is deactivated.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import requests
from django.conf import settings

from .base import Envelope, Transport, TransportError

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
PERMANENT_CODES = frozenset({"UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH", "NOT_FOUND"})

_token_lock = threading.Lock()
_token_cache: dict[str, tuple[str, float]] = {}


def _access_token(session: requests.Session) -> str:
    static = getattr(settings, "FCM_ACCESS_TOKEN", "")
    if static:
        return str(static)
    path = settings.FCM_CREDENTIALS_FILE
    if not path:
        raise TransportError("FCM_CREDENTIALS_FILE is not set")
    with _token_lock:
        cached = _token_cache.get(path)
        if cached and cached[1] > time.time() + 60:
            return cached[0]
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        now = int(time.time())
        assertion = jwt.encode(
            {"iss": info["client_email"], "scope": SCOPE, "aud": info["token_uri"], "iat": now, "exp": now + 3600},
            info["private_key"],
            algorithm="RS256",
            headers={"kid": info.get("private_key_id", "")},
        )
        try:
            response = session.post(
                info["token_uri"],
                data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
                timeout=float(getattr(settings, "NOTIFY_HTTP_TIMEOUT_SECONDS", 10)),
            )
        except requests.RequestException as exc:
            raise TransportError(f"FCM token endpoint unreachable: {exc}") from exc
        if response.status_code != 200:
            raise TransportError(f"FCM token endpoint answered {response.status_code}")
        body = response.json()
        token = str(body["access_token"])
        _token_cache[path] = (token, now + float(body.get("expires_in", 3600)))
        return token


class FcmTransport(Transport):
    channel = "fcm"

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
        url = settings.FCM_ENDPOINT.format(project=settings.FCM_PROJECT_ID)
        body: dict[str, Any] = {
            "message": {
                "token": message.to,
                "notification": {"title": message.push_title, "body": message.push_body},
                "data": {**message.data, "url": message.url, "key": message.key},
                "android": {"collapse_key": message.collapse_id, "priority": "NORMAL"},
                "apns": {"headers": {"apns-collapse-id": message.collapse_id}},
            }
        }
        try:
            response = self.session.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {_access_token(self.session)}"},
                timeout=float(getattr(settings, "NOTIFY_HTTP_TIMEOUT_SECONDS", 10)),
            )
        except requests.RequestException as exc:
            raise TransportError(f"FCM unreachable: {exc}") from exc
        if response.status_code == 200:
            return str(response.json().get("name", ""))
        code = _error_code(response)
        if response.status_code in (400, 403, 404) and code in PERMANENT_CODES:
            raise TransportError(f"FCM token rejected: {code}", permanent=True)
        retry_after = response.headers.get("Retry-After")
        raise TransportError(
            f"FCM answered {response.status_code} {code}",
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )


def _error_code(response: requests.Response) -> str:
    """The FCM error code: ``details[].errorCode`` (UNREGISTERED …) or else ``error.status``."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return ""
    for detail in error.get("details", []) or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.get("status", ""))
