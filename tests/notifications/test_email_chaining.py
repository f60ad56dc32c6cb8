"""One write per message: the end of message n and the envelope of n+1 together (RFC 2920).

``EmailTransport.prepare_chained``: each call sends the pending message's content and final dot
with the new message's MAIL, RCPT and DATA, reads the replies as a group and settles the pending
message by the reply to its dot; ``flush`` sends the last one alone.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import time_machine

from notifications import delivery
from notifications.models import OutboxMessage, OutboxState
from notifications.transports import Envelope, Outcome, TransportError
from notifications.transports.email import EmailTransport
from tests.e2e.servers.smtp import SmtpServer
from tests.notifications.conftest import ScriptedSMTP, paris


def _envelope(n: int, to: str = "") -> Envelope:
    return Envelope(
        key=f"{n:064d}",
        channel="email",
        to=to or f"p{n}@example.org",
        language="fr",
        subject="Rappel",
        text=f"texte {n}\n.ligne qui commence par un point\n",
        html=f"<p>html {n}</p>",
    )


def _message_id(n: int) -> str:
    return f"<{n:064d}@carnet.localhost>"


class _Writes:
    """The SMTP session's writes, counted (each one a wake-up of the server)."""

    def __init__(self, transport: EmailTransport) -> None:
        self.count = 0
        smtp = transport.connection.connection
        smtp.ehlo_or_helo_if_needed()  # once per session, not counted
        send = smtp.send

        def counting(data: Any) -> None:
            self.count += 1
            send(data)

        smtp.send = counting


def _chain(transport: EmailTransport, n: int, to: str = "") -> Outcome:
    future: Outcome = Outcome()
    transport.prepare_chained(_envelope(n, to))(future)
    return future


@pytest.fixture
def transport(use_smtp: SmtpServer) -> Iterator[EmailTransport]:
    email = EmailTransport()
    email.open()
    yield email
    email.close()


def test_n_messages_in_n_plus_one_writes_each_settled_by_the_reply_to_its_own_dot(
    transport: EmailTransport, use_smtp: SmtpServer
) -> None:
    writes = _Writes(transport)
    first = _chain(transport, 1)
    assert not first.done() and use_smtp.count == 0  # its envelope only: DATA answered 354, content to come
    second = _chain(transport, 2)
    assert first.result(timeout=0) == _message_id(1) and not second.done()
    assert use_smtp.count == 1  # the server had accepted it (250) before it was settled
    third = _chain(transport, 3)
    assert second.result(timeout=0) == _message_id(2) and not third.done()
    transport.flush()
    assert third.result(timeout=0) == _message_id(3)
    assert writes.count == 4  # three groups (content n-1 + dot + MAIL/RCPT/DATA n) and the last content
    assert [m["to"] for m in use_smtp.messages] == [[f"p{n}@example.org"] for n in (1, 2, 3)]
    for n, message in enumerate(use_smtp.messages, start=1):
        assert message["message_id"] == _message_id(n)
        assert b"\r\n.ligne qui commence par un point\r\n" in message["raw"]  # dot-stuffing undone by the server
    transport.flush()  # nothing pending: nothing sent
    assert writes.count == 4


def test_a_refused_envelope_fails_that_message_alone_and_the_session_goes_on(
    transport: EmailTransport, use_smtp: SmtpServer
) -> None:
    use_smtp.refuse.add("gone@example.org")
    first = _chain(transport, 1)
    refused = _chain(transport, 2, to="gone@example.org")
    assert first.result(timeout=0) == _message_id(1)  # accepted in the same group, before the refusal
    with pytest.raises(TransportError) as error:
        refused.result(timeout=0)
    assert error.value.permanent
    third = _chain(transport, 3)
    transport.flush()
    assert third.result(timeout=0) == _message_id(3)
    assert [m["to"] for m in use_smtp.messages] == [["p1@example.org"], ["p3@example.org"]]


@pytest.fixture
def scripted(settings: Any) -> Iterator[Callable[..., tuple[ScriptedSMTP, EmailTransport]]]:
    opened: list[EmailTransport] = []

    def make(replies: dict[str, list[bytes]], **kw: Any) -> tuple[ScriptedSMTP, EmailTransport]:
        server = ScriptedSMTP(replies, **kw)
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 5
        transport = EmailTransport()
        transport.open()
        opened.append(transport)
        return server, transport

    yield make
    for transport in opened:
        transport._reset = lambda: None  # type: ignore[method-assign]  # the scripted server serves one session
        transport.pending = None
        if transport.connection is not None:
            transport.connection.close()


def _verbs(server: ScriptedSMTP) -> list[bytes]:
    """The transaction commands and final dots the server read, in order."""
    wanted = (b"mail", b"rcpt", b"data", b"rset", b".")
    return [line.split()[0].lower() for line in server.lines if line.split() and line.split()[0].lower() in wanted]


def test_a_refused_content_fails_that_message_alone_without_resetting_the_next(scripted: Any) -> None:
    server, transport = scripted({"end": [b"554 5.6.0 content refused"]})
    first = _chain(transport, 1)
    second = _chain(transport, 2)
    with pytest.raises(TransportError) as error:
        first.result(timeout=0)
    assert not error.value.permanent and "554" in error.value.message  # retried, as a refused DATA was
    assert not second.done()  # its envelope was accepted: it is the pending message now
    transport.flush()
    assert second.result(timeout=0) == _message_id(2)
    # No RSET between the refused dot and the next envelope (it would have reset message 2's transaction).
    assert b"rset" not in _verbs(server)


@pytest.mark.parametrize(
    ("script", "first_accepted"),
    [
        ({"end": [b"drop"]}, False),  # dropped before the reply to message 1's dot: unknown, retried
        ({"mail": [b"250 ok", b"drop"]}, True),  # dropped after accepting message 1, before message 2's envelope
        ({"end": [b"421 4.3.0 closing"]}, False),
    ],
)
def test_a_dropped_session_settles_what_was_accepted_and_fails_the_rest(
    scripted: Any, script: dict[str, list[bytes]], first_accepted: bool
) -> None:
    _server, transport = scripted(script)
    resets: list[int] = []
    transport._reset = lambda: resets.append(1)  # no second session here
    first = _chain(transport, 1)
    second = _chain(transport, 2)
    assert first.done() and second.done()  # nobody waits for ever
    if first_accepted:
        assert first.result(timeout=0) == _message_id(1)
    else:
        with pytest.raises(TransportError) as error:
            first.result(timeout=0)
        assert not error.value.permanent
    with pytest.raises(TransportError) as error:
        second.result(timeout=0)
    assert not error.value.permanent  # retried: a duplicate at worst, never a loss
    assert resets and transport.pending is None


def test_a_server_without_pipelining_gets_the_plain_dialogue_one_message_per_call(scripted: Any) -> None:
    server, transport = scripted({}, pipelining=False)
    writes = _Writes(transport)
    first = _chain(transport, 1)
    assert first.result(timeout=0) == _message_id(1)  # settled in its own call
    second = _chain(transport, 2)
    assert second.result(timeout=0) == _message_id(2)
    assert writes.count == 8  # MAIL, RCPT, DATA, content: one round trip each
    assert _verbs(server) == [b"mail", b"rcpt", b"data", b"."] * 2 and server.ends == 2


def test_send_after_a_chained_message_ends_it_first(transport: EmailTransport, use_smtp: SmtpServer) -> None:
    first = _chain(transport, 1)
    assert transport.send(_envelope(2)) == _message_id(2)
    assert first.result(timeout=0) == _message_id(1)
    assert [m["message_id"] for m in use_smtp.messages] == [_message_id(1), _message_id(2)]


@pytest.mark.django_db
def test_a_bounce_cancels_the_next_message_to_that_address_though_messages_are_chained(
    make_patient: Any, make_item: Any, use_smtp: SmtpServer
) -> None:
    """A message to the address of one on the wire waits for its outcome: a bounce suppresses the
    address and cancels it (not sent, not refused a second time), as when one message went at a time."""
    from notifications.services import outbox_sync

    use_smtp.refuse.add("gone@example.org")
    patients = [make_patient(consent_push=False, email="gone@example.org")]
    patients += [make_patient(consent_push=False) for _ in range(2)]
    with time_machine.travel(paris("2026-01-15"), tick=False):
        for patient in patients:
            make_item(patient, due="2026-02-10", kind="calcium_check")
        outbox_sync(patients=patients)
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        stats = delivery.outbox_sweep()
    to_gone = OutboxMessage.objects.filter(patient=patients[0]).order_by("pk")
    assert to_gone.count() == 2
    assert sorted((row.state, row.closed_reason) for row in to_gone) == [
        (OutboxState.CANCELLED, "destination_gone"),
        (OutboxState.DEAD, "destination_gone"),
    ]
    assert stats.sent == 4 and use_smtp.count == 4 and use_smtp.duplicates() == 0
    assert OutboxMessage.objects.filter(patient__in=patients[1:], state=OutboxState.SENT).count() == 4


def test_an_unusual_message_goes_through_django_after_the_pending_one(
    transport: EmailTransport, use_smtp: SmtpServer
) -> None:
    first = _chain(transport, 1)
    long_line = Envelope(key=f"{2:064d}", channel="email", to="p2@example.org", language="fr", text="x" * 1200)
    odd: Outcome = Outcome()
    transport.prepare_chained(long_line)(odd)  # a line over 998 bytes: Django builds and sends it
    assert first.result(timeout=0) == _message_id(1) and odd.result(timeout=0) == _message_id(2)
    assert [m["message_id"] for m in use_smtp.messages] == [_message_id(1), _message_id(2)]


def test_smtplib_errors_become_transport_errors() -> None:
    from notifications.transports.email import transport_error

    assert transport_error(smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"no")})).permanent
    assert not transport_error(smtplib.SMTPRecipientsRefused({"a@b.c": (450, b"later")})).permanent
    assert transport_error(smtplib.SMTPDataError(451, b"later")).message == "SMTP 451: b'later'"
    assert transport_error(OSError("reset")).message == "SMTP unavailable: reset"
