"""Web Push's own encryption and HTTP/1.1 client give what http_ece and urllib3 gave (bench/bench_delivery.py)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import http_ece  # type: ignore[import-untyped]  # no stubs
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from notifications.transports import Envelope, TransportError, transport_for
from notifications.transports import webpush as webpush_transport
from notifications.transports.http1 import HttpError, KeepAlive, check_target
from tests.e2e.servers.webpush import Subscription

KEY = "cd" * 32
PAYLOADS = [b"x", '{"title": "Carnet", "body": "une étape de soin est prévue"}'.encode(), b"y" * 4078]


@pytest.mark.parametrize("payload", PAYLOADS, ids=["one byte", "a reminder", "the largest one record holds"])
def test_encrypt_writes_http_eces_bytes_for_the_same_key_and_salt(payload: bytes, monkeypatch: Any) -> None:
    sub = Subscription("https://push.test/s")
    private, salt = ec.generate_private_key(ec.SECP256R1()), os.urandom(16)
    monkeypatch.setattr("notifications.transports.webpush.ec.generate_private_key", lambda curve: private)
    monkeypatch.setattr("notifications.transports.webpush.os.urandom", lambda n: salt)
    ours = webpush_transport.encrypt(payload, p256dh=sub.p256dh, auth=sub.auth)
    theirs = http_ece.encrypt(
        payload,
        salt=salt,
        private_key=private,
        dh=webpush_transport._receiver(sub.p256dh)[0],
        auth_secret=sub.auth_secret,
        version="aes128gcm",
    )
    assert ours == theirs
    assert http_ece.decrypt(ours, private_key=sub.private_key, auth_secret=sub.auth_secret) == payload


@pytest.mark.parametrize("payload", [b"", b"z" * 5000], ids=["empty", "two records"])
def test_encrypt_leaves_other_payloads_to_http_ece(payload: bytes) -> None:
    sub = Subscription("https://push.test/s")
    body = webpush_transport.encrypt(payload, p256dh=sub.p256dh, auth=sub.auth)
    assert http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth_secret) == payload


def test_each_message_has_its_own_ecdh_key_and_salt() -> None:
    sub = Subscription("https://push.test/s")
    first, second = (webpush_transport.encrypt(b"same", p256dh=sub.p256dh, auth=sub.auth) for _ in range(2))
    assert first[:16] != second[:16]  # salt
    assert first[21:86] != second[21:86]  # the sender's public key (RFC 8291 keyid)


@pytest.mark.parametrize("target", ["push/x", "/a b", "/a\r\nX-Evil: 1", "/é", "/a\x7f"])
def test_a_target_that_would_split_the_request_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="request target"):
        check_target(target)


def test_an_endpoint_with_a_space_is_permanent_and_sends_nothing(use_push: Any) -> None:
    sub = use_push.subscribe()
    message = Envelope(
        key=KEY, channel="webpush", to=sub.endpoint + "%20x y", language="fr", p256dh=sub.p256dh, auth=sub.auth
    )
    with pytest.raises(TransportError) as exc:
        transport_for("webpush").send(message)
    assert exc.value.permanent and "invalid subscription endpoint" in exc.value.message
    assert use_push.count == 0 and not use_push.rejected


@pytest.mark.parametrize("to", ["http://push.test:99999/x", "ftp://push.test/x", "https:///x", "push.test/x"])
def test_an_endpoint_push_cannot_address_is_permanent(use_push: Any, to: str) -> None:
    sub = use_push.subscribe()
    message = Envelope(key=KEY, channel="webpush", to=to, language="fr", p256dh=sub.p256dh, auth=sub.auth)
    with pytest.raises(TransportError) as exc:
        transport_for("webpush").send(message)
    assert exc.value.permanent and "invalid subscription endpoint" in exc.value.message


# --- the HTTP/1.1 client against a scripted server ---------------------------------------------


class Scripted:
    """A TCP server answering each request on a connection with the next canned answer, and recording requests."""

    def __init__(self, answers: list[bytes], *, close_after: int | None = None) -> None:
        self.answers = list(answers)
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            conn, _ = self.listener.accept()
            self.connections += 1
            served = 0
            with conn, conn.makefile("rb") as reader:
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = int(next(v for k, v in _fields(head) if k == "content-length"))
                    self.requests.append(head + reader.read(length))
                    conn.sendall(self.answers.pop(0))
                    served += 1
                    if self.close_after is not None and served >= self.close_after:
                        break

    def close(self) -> None:
        self.listener.close()


def _fields(head: bytes) -> Iterator[tuple[str, str]]:
    for line in head.decode().split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            yield name.lower(), value.strip()


CREATED = b"HTTP/1.1 201 Created\r\nLocation: /m/1\r\nContent-Length: 0\r\n\r\n"


def test_requests_share_one_connection_and_answers_are_read_whole() -> None:
    chunked = b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + CREATED
    server = Scripted([CREATED, chunked, interim, b"HTTP/1.1 410 Gone\r\nContent-Length: 4\r\n\r\ngone"])
    client = KeepAlive(f"http://127.0.0.1:{server.port}")
    try:
        first = client.post("/push/a?x=1", {"TTL": "60", "Topic": "t1"}, b"\x00body")
        assert (first.status, first.headers["location"], first.body) == (201, "/m/1", b"")
        second = client.post("/push/a", {}, b"b")
        assert (second.status, second.headers["retry-after"], second.body) == (429, "7", b"abc")
        assert client.post("/push/a", {}, b"c").status == 201  # the 100 skipped
        gone = client.post("/push/b", {}, b"d")
        assert (gone.status, gone.body) == (410, b"gone")
    finally:
        client.close()
        server.close()
    assert client.connections == 1 and server.connections == 1
    head, body = server.requests[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /push/a?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert dict(_fields(head + b"\r\n\r\n")) == {
        "host": f"127.0.0.1:{server.port}",
        "ttl": "60",
        "topic": "t1",
        "content-length": "5",
    }
    assert body == b"\x00body"


def test_a_connection_the_server_closed_is_replaced_before_the_next_request() -> None:
    server = Scripted([CREATED, CREATED], close_after=1)
    client = KeepAlive(f"http://127.0.0.1:{server.port}")
    try:
        assert client.post("/p", {}, b"1").status == 201
        for _ in range(100):  # until the server's close reaches us
            if client._dropped():
                break
            threading.Event().wait(0.01)
        assert client.post("/p", {}, b"2").status == 201
    finally:
        client.close()
        server.close()
    assert client.connections == 2 and len(server.requests) == 2  # each sent once


def test_connection_close_and_an_answer_without_length_end_the_connection() -> None:
    server = Scripted(
        [b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.0 503 Busy\r\n\r\nlater"],
        close_after=1,
    )
    client = KeepAlive(f"http://127.0.0.1:{server.port}")
    try:
        assert client.post("/p", {}, b"1").status == 201
        assert client.sock is None  # closed as the server asked
        answer = client.post("/p", {}, b"2")
        assert (answer.status, answer.body, client.sock) == (503, b"later", None)
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b"SMTP 220 hello\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
    ],
    ids=["nothing", "not HTTP", "bad header", "short body"],
)
def test_a_broken_answer_raises_and_drops_the_connection(answer: bytes) -> None:
    server = Scripted([answer], close_after=1)
    client = KeepAlive(f"http://127.0.0.1:{server.port}", timeout=5)
    try:
        with pytest.raises(HttpError):
            client.post("/p", {}, b"1")
        assert client.sock is None
    finally:
        client.close()
        server.close()


def test_a_header_value_with_a_newline_is_refused() -> None:
    client = KeepAlive("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="cannot be sent"):
        client.post("/p", {"Topic": "a\r\nX-Evil: 1"}, b"")
    assert client.connections == 0
