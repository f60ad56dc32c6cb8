"""FCM HTTP v1 and APNs against loopback fakes: auth, collapse ids, permanent failures."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from notifications.transports import TRANSPORTS, Envelope, TransportError, transport_for

KEY = "ab" * 32


def _envelope(channel: str, to: str) -> Envelope:
    return Envelope(
        key=KEY,
        channel=channel,
        to=to,
        language="en",
        push_title="Carnet",
        push_body="Carnet: a care step is due — open the app",
        url="https://carnet.test/app/",
    )


def test_registry_names_one_transport_per_channel() -> None:
    assert set(TRANSPORTS) == {"email", "webpush", "fcm", "apns"}
    assert all(transport_for(name).channel == name for name in TRANSPORTS)


def test_fcm_sends_with_oauth_token_and_collapse_key(fcm_server: Any) -> None:
    transport = transport_for("fcm")
    transport.open()
    name = transport.send(_envelope("fcm", "token-1"))
    name2 = transport.send(_envelope("fcm", "token-2"))
    transport.close()
    assert name == f"projects/{fcm_server.project}/messages/1" and name2.endswith("/2")
    assert fcm_server.token_grants == 1  # the access token is cached
    sent = fcm_server.received[0]
    assert sent["token"] == "token-1"
    assert sent["android"]["collapse_key"] == KEY[:32]
    assert sent["notification"] == {"title": "Carnet", "body": "Carnet: a care step is due — open the app"}


def test_fcm_unregistered_token_is_permanent(fcm_server: Any) -> None:
    fcm_server.unregistered.add("stale")
    with pytest.raises(TransportError) as exc:
        transport_for("fcm").send(_envelope("fcm", "stale"))
    assert exc.value.permanent and "UNREGISTERED" in exc.value.message


def test_fcm_unreachable_is_transient(settings: Any) -> None:
    settings.FCM_ENDPOINT = "http://127.0.0.1:9/v1/projects/{project}/messages:send"
    settings.FCM_ACCESS_TOKEN = "static"
    with pytest.raises(TransportError) as exc:
        transport_for("fcm").send(_envelope("fcm", "t"))
    assert not exc.value.permanent


def test_apns_sends_with_provider_token_and_collapse_id(apns_server: Any) -> None:
    apns_id = transport_for("apns").send(_envelope("apns", "devicetoken1"))
    assert apns_id == str(uuid.UUID(hex=KEY[:32]))
    got = apns_server.received[0]
    assert got["headers"]["apns-collapse-id"] == KEY[:32]
    assert got["headers"]["apns-push-type"] == "alert"
    assert got["payload"]["aps"]["alert"]["body"] == "Carnet: a care step is due — open the app"


def test_apns_410_is_permanent(apns_server: Any) -> None:
    apns_server.unregistered.add("gone")
    with pytest.raises(TransportError) as exc:
        transport_for("apns").send(_envelope("apns", "gone"))
    assert exc.value.permanent
