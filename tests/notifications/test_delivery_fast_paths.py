"""The delivery hot path's shortcuts give what the slow paths gave (bench/bench_delivery.py measures them)."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.db import connection
from django.template.loader import render_to_string

from notifications import delivery, rendering, services
from notifications.models import OutboxMessage, OutboxState
from notifications.transports import Envelope, transport_for
from notifications.transports import email as email_transport
from notifications.transports import webpush as webpush_transport
from notifications.transports.email import EmailTransport, mime_bytes
from notifications.transports.http1 import KeepAlive

from .conftest import paris

KEY = "ab" * 32
TEMPLATES = ("reminder", "overdue", "staff_alert", "digest", "undeliverable")


def _email(subject: str, text: str, html: str, *, to: str = "jeanne@example.org", **kw: Any) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=kw.pop("from_email", "Carnet <no-reply@carnet.localhost>"),
        to=[to],
        headers={"Message-ID": f"<{KEY}@carnet.localhost>", "X-Carnet-Key": KEY, "Auto-Submitted": "auto-generated"},
        **kw,
    )
    message.attach_alternative(html, "text/html")
    return message


def _as_django_writes_it(message: EmailMultiAlternatives, fast: bytes) -> bytes:
    """Django's own bytes for ``message``, with the boundary and Date ``fast`` drew."""
    boundary = re.search(rb'boundary="([^"]+)"', fast)
    date = re.search(rb"\r\nDate: ([^\r]+)\r\n", fast)
    assert boundary and date
    mime = message.message()
    mime.set_boundary(boundary.group(1).decode())
    mime.replace_header("Date", date.group(1).decode())
    return bytes(mime.as_bytes(linesep="\r\n"))  # type: ignore[call-arg]  # Django's SafeMIME* take linesep


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("language", ["fr", "en"])
def test_mime_bytes_are_djangos_byte_for_byte_for_every_template(name: str, language: str) -> None:
    context = {"first_name": "Zoé", "url": "https://carnet.test/app/", "offset_days": -2, "days_before": 2}
    context.update({"count": 7, "critical": 1, "reason": "max_attempts", "day": "2026-02-10", "repeat": 0})
    message = _email(
        rendering.SUBJECTS[name][language],
        render_to_string(f"notifications/email/{name}.{language}.txt", context),
        render_to_string(f"notifications/email/{name}.{language}.html", context),
    )
    fast = mime_bytes(message)
    assert fast is not None
    assert fast == _as_django_writes_it(message, fast)


@pytest.mark.parametrize(
    ("subject", "text", "to", "from_email"),
    [
        ("Carnet : un sujet bien plus long que les nôtres, pour que l'en-tête soit plié en deux", "t", "a@b.org", None),
        ("ASCII subject", "line\r\nwith CRLF\rand CR\n.dot first\n", "a@b.org", None),
        ("x", "t", "Jean Dupont <jean.dupont@example.org>", None),
        ("x", "t", "zoé@exämple.org", None),
        ("x", "t", "a@b.org", "Carnet Santé <no-reply@carnet.localhost>"),
    ],
)
def test_mime_bytes_match_django_on_awkward_headers_and_line_endings(
    subject: str, text: str, to: str, from_email: str | None
) -> None:
    extra = {"from_email": from_email} if from_email else {}
    message = _email(subject, text, "<p>é</p>\n", to=to, **extra)
    fast = mime_bytes(message)
    assert fast is not None
    assert fast == _as_django_writes_it(message, fast)


@pytest.mark.parametrize("name", ["Message-ID", "X-Carnet-Key", "To"])
@pytest.mark.parametrize("length", [1, 40, 60, 64, 65, 66, 67, 70, 100, 200, 899])
@pytest.mark.parametrize("filler", ["0123456789abcdef", "a.b-c_d+e=f/g!h#", "<>@:x", "a,b;c", "=?utf-8?q?x?="])
def test_header_lines_fold_as_the_standard_library_folds_them(name: str, length: int, filler: str) -> None:
    value = (filler * (length // len(filler) + 1))[:length]
    assert email_transport._line(name, value) == email_transport.FOLD.fold(name, value)
    assert email_transport._line(name, f"<{value}@carnet.localhost>") == email_transport.FOLD.fold(
        name, f"<{value}@carnet.localhost>"
    )


def test_mime_bytes_leave_the_unusual_to_django() -> None:
    assert mime_bytes(_email("x", "a" * 999, "<p>h</p>")) is None  # a line Django would quote-print
    assert mime_bytes(_email("x", "t", "<p>h</p>", cc=["c@example.org"])) is None
    plain = EmailMultiAlternatives(subject="x", body="t", from_email="a@b.org", to=["c@d.org"])
    assert mime_bytes(plain) is None  # no HTML part
    with_file = _email("x", "t", "<p>h</p>")
    with_file.attach("a.txt", "content", "text/plain")
    assert mime_bytes(with_file) is None


def test_email_transport_sends_what_a_reader_decodes(use_smtp: Any) -> None:
    transport = transport_for("email")
    transport.open()
    text, html = "Bonjour Zoé,\n\nUne étape est prévue.\n", "<p>Bonjour Zoé</p>\n"
    for n in range(3):  # one session for the batch
        transport.send(
            Envelope(
                key=f"{n}{KEY[1:]}",
                channel="email",
                to=f"p{n}@example.org",
                language="fr",
                subject="Carnet : une étape de soin est prévue",
                text=text,
                html=html,
            )
        )
    transport.close()
    assert use_smtp.count == 3
    got = email.message_from_bytes(use_smtp.messages[2]["raw"], policy=email.policy.default)
    assert got["Subject"] == "Carnet : une étape de soin est prévue"
    assert got["To"] == "p2@example.org" and use_smtp.messages[2]["to"] == ["p2@example.org"]
    assert got["Message-ID"].strip() == f"<2{KEY[1:]}@carnet.localhost>"  # folded, as Django folds it
    assert got.get_body(("plain",)).get_content().replace("\r\n", "\n") == text  # type: ignore[union-attr]
    assert got.get_body(("html",)).get_content().replace("\r\n", "\n") == html  # type: ignore[union-attr]


def test_vapid_header_is_signed_once_per_push_service(use_push: Any) -> None:
    webpush_transport._vapid_cache.clear()
    first = webpush_transport.vapid_headers(use_push.origin)
    assert webpush_transport.vapid_headers(use_push.origin) is first
    assert webpush_transport.vapid_headers("https://push.example.net") != first
    sub = use_push.subscribe()
    transport = transport_for("webpush")
    transport.open()
    for n in range(2):
        transport.send(_push(n, sub, push_title="Carnet"))
    transport.close()
    assert use_push.count == 2 and not use_push.rejected  # the endpoint checked the reused token twice
    assert len(webpush_transport._vapid_cache) == 2


def test_push_service_unavailable_is_transient(use_push: Any) -> None:
    from notifications.transports import TransportError

    use_push.unavailable = True
    sub = use_push.subscribe()
    with pytest.raises(TransportError) as exc:
        transport_for("webpush").send(
            Envelope(key=KEY, channel="webpush", to=sub.endpoint, language="fr", p256dh=sub.p256dh, auth=sub.auth)
        )
    assert not exc.value.permanent and exc.value.retry_after is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_outcome_commits_without_waiting_for_the_flush_and_leaves_the_session_alone(
    make_patient: Any, make_item: Any
) -> None:
    patient = make_patient(consent_push=False)
    with time_machine.travel(paris("2026-01-15"), tick=False):
        make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO on")
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        token, rows = delivery.outbox_claim(limit=10)
        assert rows and delivery._async_commit()  # autocommit: each outcome is its own transaction
        assert delivery._finish(rows[0], token, state=OutboxState.SENT, provider_id="p", attempts=1) is True
        assert delivery._finish(rows[0], token, state=OutboxState.PENDING) is False  # no longer ours
        assert delivery._finish(rows[1], "not-our-claim", state=OutboxState.SENT) is False
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"  # SET LOCAL: only the mark's own transaction
    rows[0].refresh_from_db()
    assert (rows[0].state, rows[0].provider_id, rows[0].attempts, rows[0].claimed_until) == ("sent", "p", 1, None)
    # The outcome's audit entry came with it, in the same statement; a lost claim wrote none.
    audit = rows[0].history.get(history_change_reason="delivery")
    assert (audit.history_type, audit.history_change_reason, audit.history_user_id) == ("~", "delivery", None)
    assert (audit.state, audit.provider_id, audit.attempts, audit.key) == ("sent", "p", 1, rows[0].key)
    assert audit.updated_at == rows[0].updated_at and audit.claim_token == token
    assert not rows[1].history.filter(history_change_reason="delivery").exists()


@pytest.mark.django_db
def test_a_mark_follows_its_send_by_at_most_one_message(due_emails: Any, use_smtp: Any, monkeypatch: Any) -> None:
    # (what, row key, thread, the keys the SMTP server had accepted then), from both threads
    events: list[tuple[str, str, str, frozenset[str]]] = []
    finish, send = delivery._finish, EmailTransport._send_chained

    def server_accepted() -> frozenset[str]:
        with use_smtp.lock:
            return frozenset(str(m["key"]) for m in use_smtp.messages)

    def record(what: str, key: str) -> None:
        events.append((what, key, threading.current_thread().name, server_accepted()))

    def recording_finish(row: Any, token: str, **values: Any) -> bool:
        record("mark", row.key)
        return finish(row, token, **values)

    def recording_send(self: Any, email: Any, *args: Any) -> None:  # the SMTP dialogue of a prepared message
        record("send", email.extra_headers["X-Carnet-Key"])
        send(self, email, *args)

    def recording_mime_bytes(email: Any) -> bytes | None:
        record("build", email.extra_headers["X-Carnet-Key"])
        return mime_bytes(email)

    monkeypatch.setattr(delivery, "_finish", recording_finish)
    monkeypatch.setattr(email_transport, "mime_bytes", recording_mime_bytes)
    monkeypatch.setattr(EmailTransport, "_send_chained", recording_send)
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        stats = delivery.outbox_sweep()
    assert stats.sent == 8 and use_smtp.count == 8 and use_smtp.duplicates() == 0
    here = threading.current_thread().name
    assert {thread for what, _, thread, _ in events if what in ("mark", "build")} == {here}  # database, CPU work
    assert here not in {thread for what, _, thread, _ in events if what == "send"}  # the sender's I/O
    marked: set[str] = set()
    for what, key, _thread, accepted in events:
        if what == "send":
            # When a message goes out (with the end of the one before it), at most ``CHAIN_DEPTH`` - 1
            # accepted messages still wait for their marks. Inside the test's transaction each mark is
            # written alone; sent ahead, two share a statement (test_delivery_outcomes.py): one more,
            # ``IN_FLIGHT``.
            chain = delivery.CHAIN_DEPTH
            assert len(accepted - marked) <= chain - 1 == delivery.IN_FLIGHT - 2, (key, accepted - marked)
        elif what == "mark":
            assert key in accepted  # marked once its server accepted it, not before
            assert len(accepted - marked) <= delivery.CHAIN_DEPTH == delivery.IN_FLIGHT - 1, (key, accepted - marked)
            marked.add(key)
    assert marked == set(OutboxMessage.objects.values_list("key", flat=True)) == server_accepted()
    assert OutboxMessage.objects.filter(state=OutboxState.SENT).count() == 8


@pytest.mark.django_db
def test_an_error_between_sends_still_records_the_message_on_the_wire(due_emails: Any, monkeypatch: Any) -> None:
    envelope, calls = rendering.envelope, []

    def failing_second(row: Any, **kw: Any) -> Envelope:
        calls.append(row.pk)
        if len(calls) == 2:
            raise RuntimeError("a template broke")
        return envelope(row, **kw)

    monkeypatch.setattr(rendering, "envelope", failing_second)
    with time_machine.travel(paris("2026-02-10", 10), tick=False), pytest.raises(RuntimeError):
        delivery.outbox_sweep()
    assert len(mail.outbox) == 1  # the first message went out while the second was rendered
    sent = OutboxMessage.objects.get(state=OutboxState.SENT)  # ... and it is recorded: no duplicate later
    assert sent.pk == calls[0] and sent.provider_id == f"<{sent.key}@carnet.localhost>"
    assert OutboxMessage.objects.filter(state=OutboxState.SENDING).count() == 7  # back after the lease


@pytest.mark.parametrize("p256dh", ["not base64 at all!", "AAAA", ""])
def test_malformed_subscription_keys_are_permanent_and_send_nothing(use_push: Any, p256dh: str) -> None:
    from notifications.transports import TransportError

    sub = use_push.subscribe()
    with pytest.raises(TransportError) as exc:
        transport_for("webpush").send(
            Envelope(key=KEY, channel="webpush", to=sub.endpoint, language="fr", p256dh=p256dh, auth=sub.auth)
        )
    assert exc.value.permanent and "invalid subscription" in exc.value.message
    assert use_push.count == 0 and not use_push.rejected  # nothing went out


def test_push_goes_out_on_one_keep_alive_connection_per_batch(use_push: Any) -> None:
    subs = [use_push.subscribe() for _ in range(3)]
    transport = transport_for("webpush")
    transport.open()
    try:
        ids = [transport.send(_push(n, sub)) for n, sub in enumerate(subs)]
        client = transport.by_origin[use_push.origin]  # type: ignore[attr-defined]  # WebPushTransport's own
        assert isinstance(client, KeepAlive)
        assert client.connections == 1 and client.requests == 3
    finally:
        transport.close()
    assert use_push.count == 3 and not use_push.rejected
    assert all(i.startswith(f"{use_push.origin}/msg/") for i in ids)  # the Location the service answered


def _send_one(transport: Any, n: int) -> str:
    text = "Bonjour,\n"
    message = Envelope(
        key=f"{n}{KEY[1:]}", channel="email", to=f"p{n}@example.org", language="fr", subject="s", text=text, html=text
    )
    return str(transport.send(message))


def test_the_smtp_session_is_kept_between_batches_and_replaced_when_dead(use_smtp: Any) -> None:
    first = transport_for("email")
    first.open()
    _send_one(first, 1)
    session = first.connection  # type: ignore[attr-defined]  # EmailTransport's own
    first.close()
    second = transport_for("email")
    second.open()
    assert second.connection is session  # type: ignore[attr-defined]  # the next batch reuses it
    _send_one(second, 2)
    second.close()
    use_smtp.stop()  # the server goes away (or times the idle session out) and comes back
    use_smtp.start()
    third = transport_for("email")
    third.open()
    assert third.connection is not session  # type: ignore[attr-defined]  # NOOP failed: a new session
    _send_one(third, 3)
    third.close()
    assert use_smtp.count == 3 and use_smtp.duplicates() == 0


def test_a_kept_session_is_not_used_with_other_settings(use_smtp: Any, settings: Any) -> None:
    first = transport_for("email")
    first.open()
    session = first.connection  # type: ignore[attr-defined]  # EmailTransport's own
    first.close()
    settings.EMAIL_HOST_USER = "someone-else"
    second = transport_for("email")
    second.open()
    assert second.connection is not session  # type: ignore[attr-defined]
    second.close()


def _push(n: int, sub: Any, **fields: Any) -> Envelope:
    """The ``n``-th Web Push envelope (its own key) to the subscription ``sub``."""
    return Envelope(
        key=f"{n}{KEY[1:]}",
        channel="webpush",
        to=sub.endpoint,
        language="fr",
        push_body="b",
        p256dh=sub.p256dh,
        auth=sub.auth,
        **fields,
    )


@pytest.mark.parametrize(
    "address",
    [
        "jeanne@example.org",
        "o'brien+x@mail.example.org",
        "Jeanne <jeanne@example.org>",
        "a..b@example.org",
        "",
        "<a@b.c>",
    ],
)
def test_quoteaddr_is_smtplibs(address: str) -> None:
    import smtplib

    assert email_transport.quoteaddr(address) == smtplib.quoteaddr(address)
