"""The loopback servers the e2e tests and bench_delivery use stay strict where they were made cheaper."""

from __future__ import annotations

import time
from typing import Any

import jwt
import time_machine
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.servers.webpush import PushServer


def _headers(token: str, key: str) -> dict[str, str]:
    return {"Authorization": f"vapid t={token}, k={key}", "Content-Encoding": "aes128gcm", "TTL": "60"}


def test_a_verified_vapid_token_is_reused_but_a_forged_or_expired_one_is_refused(
    push_server: PushServer, vapid_keys: dict[str, str]
) -> None:
    from py_vapid import Vapid

    sub = push_server.subscribe("d1")
    path = sub.endpoint.removeprefix(push_server.origin)
    claims = {"sub": "mailto:ops@carnet.test", "aud": push_server.origin, "exp": int(time.time()) + 3600}
    good = Vapid.from_file(vapid_keys["private_pem_path"]).sign(claims)["Authorization"]
    token = good.split("t=", 1)[1].split(",", 1)[0]
    key = vapid_keys["public"]
    # Signed by another key, naming ours: refused, before and after a good token was seen.
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    assert push_server.handle(path, _headers(forged, key), b"")[0] == 403
    assert push_server.handle(path, _headers(token, key), b"not encrypted")[0] == 400  # VAPID passed, then the body
    assert token in push_server.verified
    assert push_server.handle(path, _headers(forged, key), b"")[0] == 403
    # The claims of a reused token are checked on every push: expired, it is refused.
    with time_machine.travel(time.time() + 7200):
        assert push_server.handle(path, _headers(token, key), b"")[0] == 403
    assert [status for _path, status, _reason in push_server.rejected] == [403, 400, 403, 403]


def test_the_loopback_smtp_server_reads_the_headers_it_counts(smtp_server: Any) -> None:
    import smtplib

    raw = (
        b'Content-Type: multipart/alternative; boundary="b1"\r\nSubject: s\r\nMessage-ID: \r\n <k@x>\r\n'
        b"X-Carnet-Key: k\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nt\r\n--b1--\r\n"
    )
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=5) as client:
        client.sendmail("a@example.org", ["b@example.org"], raw)
    (got,) = smtp_server.messages
    assert (got["message_id"], got["subject"], got["key"], got["to"], got["raw"]) == (
        "<k@x>",
        "s",
        "k",
        ["b@example.org"],
        raw,
    )
