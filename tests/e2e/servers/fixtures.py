"""pytest fixtures for the loopback servers; test modules import the ones they use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from py_vapid import Vapid

from .providers import ApnsServer, FcmServer
from .smtp import SmtpServer
from .webpush import PushServer, b64url


@pytest.fixture
def vapid_keys(tmp_path: Path) -> dict[str, str]:
    vapid = Vapid()
    vapid.generate_keys()
    pem = tmp_path / "vapid-private.pem"
    pem.write_bytes(vapid.private_pem())
    public = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"private_pem_path": str(pem), "public": b64url(public)}


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def push_server(vapid_keys: dict[str, str]) -> Iterator[PushServer]:
    server = PushServer(vapid_keys["public"]).start()
    yield server
    server.stop()


@pytest.fixture
def use_smtp(settings: Any, smtp_server: SmtpServer) -> SmtpServer:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_TIMEOUT = 5
    return smtp_server


@pytest.fixture
def use_push(settings: Any, push_server: PushServer, vapid_keys: dict[str, str]) -> PushServer:
    settings.WEBPUSH_VAPID_PRIVATE_KEY = vapid_keys["private_pem_path"]
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:ops@carnet.test"
    settings.NOTIFY_WEBPUSH_ALLOW_HTTP = True
    return push_server


@pytest.fixture
def fcm_server(settings: Any, tmp_path: Path) -> Iterator[FcmServer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    server = FcmServer(public).start()
    credentials = tmp_path / "fcm-service-account.json"
    credentials.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": server.project,
                "private_key_id": "kid-1",
                "private_key": key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ).decode(),
                "client_email": "carnet@carnet-test.iam.gserviceaccount.com",
                "token_uri": f"{server.origin}/token",
            }
        )
    )
    settings.FCM_ENDPOINT = server.origin + "/v1/projects/{project}/messages:send"
    settings.FCM_PROJECT_ID = server.project
    settings.FCM_CREDENTIALS_FILE = str(credentials)
    settings.FCM_ACCESS_TOKEN = ""
    yield server
    server.stop()


@pytest.fixture
def apns_server(settings: Any, tmp_path: Path) -> Iterator[ApnsServer]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = tmp_path / "AuthKey_TEST.p8"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ApnsServer(public, team_id="TEAM123456", topic="fr.carnet.app").start()
    settings.APNS_ENDPOINT = server.origin
    settings.APNS_KEY_FILE = str(pem)
    settings.APNS_KEY_ID = "KEY1234567"
    settings.APNS_TEAM_ID = "TEAM123456"
    settings.APNS_TOPIC = "fr.carnet.app"
    yield server
    server.stop()
