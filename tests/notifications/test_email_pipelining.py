"""SMTP PIPELINING (RFC 2920): one message in two round trips, refusals as ``sendmail`` raises them."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import Any

import pytest

from notifications.transports import Envelope, TransportError, transport_for
from notifications.transports.email import pipelined_sendmail
from tests.e2e.servers.smtp import SmtpServer
from tests.notifications.conftest import ScriptedSMTP

SENDER = "no-reply@carnet.localhost"
# A line starting with a dot (dot-stuffed on the wire, RFC 5321 4.5.2) and one that is only a dot.
RAW = b"Subject: x\r\nMessage-ID: <m@carnet.localhost>\r\n\r\nline\r\n.starts with a dot\r\n.\r\nend\r\n"


class _CountingSMTP(smtplib.SMTP):
    """smtplib's client, counting its writes (each one a round trip: the client then waits for replies)."""

    writes = 0

    def send(self, s: Any) -> None:
        self.writes += 1
        super().send(s)


@pytest.fixture
def plain_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.pipelining = False
    server.start()
    yield server
    server.stop()


def test_a_pipelining_server_gets_a_message_in_two_writes(smtp_server: SmtpServer) -> None:
    with _CountingSMTP("127.0.0.1", smtp_server.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("pipelining")
        before = client.writes
        for n in range(3):
            pipelined_sendmail(client, SENDER, f"p{n}@example.org", RAW)
        assert client.writes - before == 6  # MAIL+RCPT+DATA, then the content: twice per message
    assert smtp_server.count == 3
    assert [m["to"] for m in smtp_server.messages] == [[f"p{n}@example.org"] for n in range(3)]
    assert all(m["raw"] == RAW for m in smtp_server.messages)  # dot-stuffing undone by the server


def test_without_pipelining_it_is_sendmail(plain_server: SmtpServer) -> None:
    with _CountingSMTP("127.0.0.1", plain_server.port, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("pipelining")
        before = client.writes
        pipelined_sendmail(client, SENDER, "p@example.org", RAW)
        assert client.writes - before == 4  # MAIL, RCPT, DATA, content: one round trip each
    assert plain_server.count == 1 and plain_server.messages[0]["raw"] == RAW


def test_a_refused_recipient_raises_as_sendmail_and_the_session_goes_on(smtp_server: SmtpServer) -> None:
    smtp_server.refuse.add("gone@example.org")
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            pipelined_sendmail(client, SENDER, "gone@example.org", RAW)
        assert refused.value.recipients == {"gone@example.org": (550, b"5.1.1 mailbox unavailable")}
        pipelined_sendmail(client, SENDER, "p@example.org", RAW)  # the same session, reset after the refusal
    assert [m["to"] for m in smtp_server.messages] == [["p@example.org"]]


def test_the_transport_bounces_a_refused_address_on_a_pipelining_server(use_smtp: SmtpServer) -> None:
    use_smtp.refuse.add("gone@example.org")
    transport = transport_for("email")
    transport.open()
    try:
        with pytest.raises(TransportError) as error:
            transport.send(
                Envelope(key="k" * 64, channel="email", to="gone@example.org", language="fr", text="t", html="<p>h</p>")
            )
        assert error.value.permanent
        transport.send(
            Envelope(key="j" * 64, channel="email", to="p@example.org", language="fr", text="t", html="<p>h</p>")
        )
    finally:
        transport.close()
    assert [m["to"] for m in use_smtp.messages] == [["p@example.org"]]


def test_a_refused_sender_raises_as_sendmail_and_an_accepted_data_is_ended_empty() -> None:
    server = ScriptedSMTP({"mail": [b"550 no such sender"]})  # a lax server: it still accepts DATA
    client = smtplib.SMTP("127.0.0.1", server.port, timeout=5)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        pipelined_sendmail(client, SENDER, "p@example.org", RAW)
    assert refused.value.smtp_code == 550
    client.close()
    assert [line.split()[0] for line in server.lines[1:]] == [b"mail", b"rcpt", b"data", b".", b"rset"]


@pytest.mark.parametrize(
    ("script", "raised"),
    [
        ({"mail": b"421 closing"}, smtplib.SMTPSenderRefused),
        ({"rcpt": b"421 closing"}, smtplib.SMTPRecipientsRefused),
        ({"data": b"421 closing"}, smtplib.SMTPDataError),
        ({"end": b"421 closing"}, smtplib.SMTPDataError),
        ({"end": b"451 try later"}, smtplib.SMTPDataError),
    ],
)
def test_a_refusal_mid_group_raises_what_sendmail_raises(script: dict[str, bytes], raised: type[Exception]) -> None:
    server = ScriptedSMTP({verb: [reply] for verb, reply in script.items()})
    client = smtplib.SMTP("127.0.0.1", server.port, timeout=5)
    with pytest.raises(raised):
        pipelined_sendmail(client, SENDER, "p@example.org", RAW)
    closing = any(reply.startswith(b"421") for reply in script.values())
    assert (client.sock is None) == closing  # a 421 closes the session, as sendmail closes it
    client.close()
