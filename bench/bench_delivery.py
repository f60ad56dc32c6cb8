#!/usr/bin/env python
"""Delivery throughput: claimed rows sent by ONE process to a loopback SMTP server and Web Push endpoint.

    python bench/bench_delivery.py --email 5000 --push 2000 --runs 3

The servers are the e2e ones (``tests/e2e/servers``: aiosmtpd, and a Web Push endpoint that
checks VAPID and decrypts every payload), started in another process so they do not share this
one's CPU time. ``--email`` email and ``--push`` Web Push reminder rows of the outbox, each still
wanted (``_why_not`` says so), are claimed before each run in batches of ``NOTIFY_BATCH_SIZE``
(state ``sending``, a claim token, a lease), untimed; the chosen devices are pointed at the
loopback endpoint with subscription keys it can decrypt with, and a fresh VAPID key signs. A run
is the production ``notifications.delivery.outbox_deliver`` over every batch, timed per channel:
rendering, the checks against the world, the transport (its I/O on a sender thread, overlapping
the rest), the per-row outcome and its audit row.
What the servers received must equal what was sent (distinct Message-IDs, distinct Topics, no
VAPID or decryption rejection). Rows and devices are restored afterwards.

References, in the same run, against the same servers:
- email: a bare smtplib loop on one connection sending the same number of messages, built once
  from the same rendered subject/text/HTML with the standard library, with the same headers and
  8-bit bodies as ours (To, Message-ID, key and a fresh MIME boundary swapped in per message: the
  same size and 40 lines as ours), ``sendmail`` each. The loopback server advertises PIPELINING
  (RFC 2920), as production relays do: ours sends the content of message n and the MAIL, RCPT
  and DATA of message n+1 in one write (one round trip a message); smtplib never pipelines (four);
- push: the same number of pushes with ``http_ece`` (a fresh ECDH key per message, as RFC 8291
  requires) on one keep-alive urllib3 connection, the VAPID header signed once. Ours encrypts with
  its own RFC 8291 code (http_ece's bytes, tested) and posts with its own HTTP/1.1 client
  (``notifications/transports/http1.py``) on one keep-alive connection: both cost less CPU than
  http_ece and urllib3, which the reference keeps as the common way to do it.
Target: at least 500 messages/s per worker process; email ratio (ours / smtplib) ≥ 0.5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.charset import Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Figure, median, ratio_of, report, scale_counts, setup_django

TARGET_PER_S = 500.0
RATIO_TARGET = 0.5
MUTABLE = (
    "state",
    "claim_token",
    "claimed_until",
    "next_attempt_at",
    "attempts",
    "sent_at",
    "provider_id",
    "last_error",
    "closed_reason",
    "updated_at",
)


# --- the loopback servers, in their own process ------------------------------------------------


def serve(vapid_public: str) -> None:
    """Run the e2e SMTP server and Web Push endpoint; answer JSON commands on stdin until "stop"."""
    from tests.e2e.servers.smtp import SmtpServer
    from tests.e2e.servers.webpush import PushServer

    smtp = SmtpServer().start()
    push = PushServer(vapid_public).start()

    def answer(value: Any) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    answer({"smtp_port": smtp.port, "push_origin": push.origin})
    for line in sys.stdin:
        command, argument = json.loads(line)
        if command == "subscribe":
            subs = [push.subscribe(name) for name in argument]
            answer([(s.endpoint, s.p256dh, s.auth) for s in subs])
        elif command == "counts":
            with smtp.lock:
                ids = {m["message_id"] for m in smtp.messages}
                email_count = len(smtp.messages)
            with push.lock:
                topics = {f"{r['path']}|{r['topic']}" for r in push.received}
                push_count = len(push.received)
                rejected = list(push.rejected)
            answer(
                {
                    "email": email_count,
                    "email_distinct": len(ids),
                    "push": push_count,
                    "push_distinct": len(topics),
                    "push_rejected": len(rejected),
                    "push_rejections": rejected[:3],
                    "cpu_seconds": time.process_time(),  # the servers' CPU, to tell their share from ours
                }
            )
        elif command == "reset":
            with smtp.lock:
                smtp.messages.clear()
            with push.lock:
                push.received.clear()
                push.rejected.clear()
            answer(True)
        else:
            break
    smtp.stop()
    push.stop()


class Servers:
    """The loopback servers in a child process (``serve``), and what they received."""

    def __init__(self, vapid_public: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from bench.bench_delivery import serve; serve({vapid_public!r})"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._read()
        self.smtp_port: int = ready["smtp_port"]
        self.push_origin: str = ready["push_origin"]

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the loopback servers exited with {self.process.wait(10)}")
        return json.loads(line)

    def ask(self, command: str, argument: Any = None) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps([command, argument]) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.write(json.dumps(["stop", None]) + "\n")
                self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# --- the rows --------------------------------------------------------------------------------


def _claimed_rows(token: str) -> list[Any]:
    """What ``outbox_claim`` hands ``outbox_deliver``: the claimed rows and everything the checks read."""
    from notifications.models import OutboxMessage, OutboxState

    return list(
        OutboxMessage.objects.filter(claim_token=token, state=OutboxState.SENDING)
        .select_related("patient", "recipient_user", "device", "plan_item", "escalation")
        .order_by("channel", "next_attempt_at", "pk")
    )


def choose(channel: str, count: int) -> list[int]:
    """``count`` reminder rows of ``channel`` that delivery would send (not cancel), by id."""
    from notifications.delivery import _why_not
    from notifications.models import MessageKind, OutboxMessage, OutboxState

    chosen: list[int] = []
    after = 0
    while len(chosen) < count:
        page = list(
            OutboxMessage.objects.filter(
                kind=MessageKind.REMINDER,
                channel=channel,
                state__in=[OutboxState.PENDING, OutboxState.SENT],
                pk__gt=after,
            )
            .select_related("patient", "recipient_user", "device", "plan_item", "escalation")
            .order_by("pk")[: max(500, count)]
        )
        if not page:
            break
        chosen += [r.pk for r in page if not _why_not(r) and (channel == "email" or r.device_id)]
        after = page[-1].pk
    return chosen[:count]


def claim(ids: list[int], batch: int) -> list[tuple[str, list[Any]]]:
    """Claim ``ids`` as the sweep would, ``batch`` rows a claim; a long lease so no run outlives it."""
    from django.utils import timezone

    from notifications.models import OutboxMessage, OutboxState

    now = timezone.now()
    claims = []
    for start in range(0, len(ids), batch):
        token = uuid.uuid4().hex
        OutboxMessage.objects.filter(pk__in=ids[start : start + batch]).update(
            state=OutboxState.SENDING,
            claim_token=token,
            claimed_until=now + timedelta(hours=1),
            next_attempt_at=now,
            attempts=0,
            sent_at=None,
            provider_id="",
            last_error="",
            closed_reason="",
            updated_at=now,
        )
        claims.append((token, _claimed_rows(token)))
    return claims


@contextmanager
def borrowed(ids: list[int], servers: Servers) -> Iterator[int]:
    """Point the devices of push rows ``ids`` at the loopback endpoint; put rows and devices back after."""
    from notifications.models import Device, OutboxMessage

    rows = list(OutboxMessage.objects.filter(pk__in=ids).only("pk", *MUTABLE))
    device_ids = sorted(
        set(OutboxMessage.objects.filter(pk__in=ids, device__isnull=False).values_list("device_id", flat=True))
    )
    devices = list(Device.objects.filter(pk__in=device_ids).only("pk", "endpoint", "p256dh", "auth", "active"))
    try:
        subs = servers.ask("subscribe", [f"d{pk}" for pk in device_ids])
        loopback = [
            Device(pk=pk, endpoint=endpoint, p256dh=p256dh, auth=auth, active=True)
            for pk, (endpoint, p256dh, auth) in zip(device_ids, subs, strict=True)
        ]
        Device.objects.bulk_update(loopback, ["endpoint", "p256dh", "auth", "active"], batch_size=500)
        yield len(device_ids)
    finally:
        Device.objects.bulk_update(devices, ["endpoint", "p256dh", "auth", "active"], batch_size=500)
        OutboxMessage.objects.bulk_update(rows, list(MUTABLE), batch_size=500)


# --- the references --------------------------------------------------------------------------


@dataclass
class Sample:
    """What a loopback reference sends: one rendered email and push payload."""

    subject: str
    text: str
    html: str
    push_payload: bytes
    addresses: list[str]
    subscriptions: list[tuple[str, str, str]]


def smtplib_loop(sample: Sample, port: int, count: int) -> None:
    """The email reference: one connection, a message built once, To, Message-ID, key and boundary swapped in.

    The same message for the server to read as ours, byte for byte in size and shape: the same
    headers (Date, X-Carnet-Key, Auto-Submitted; the Message-ID as long, on the domain ours uses,
    folded as ours is) and 8-bit UTF-8 bodies, as Django writes them, and a fresh MIME boundary
    of the same length in every message, as Django's (a server parsing the MIME structure
    compiles a pattern per boundary: reusing one made the reference's messages cheaper to read).
    """
    from django.conf import settings

    domain = getattr(settings, "NOTIFY_MESSAGE_ID_DOMAIN", "carnet.localhost")
    key_mark, boundary_mark = "K" * 64, "B" * 32  # as long as a row key and a uuid4's hex digits
    utf8 = Charset("utf-8")
    utf8.body_encoding = None  # 8bit, as Django writes a UTF-8 body
    template = MIMEMultipart("alternative", boundary=f"==============={boundary_mark}==")
    template["Subject"] = Header(sample.subject, "utf-8").encode()
    template["From"] = settings.DEFAULT_FROM_EMAIL
    template["To"] = "@TO@"
    template["Date"] = formatdate()
    template["Message-ID"] = f"<{key_mark}@{domain}>"
    template["X-Carnet-Key"] = key_mark
    template["Auto-Submitted"] = "auto-generated"
    template.attach(MIMEText(sample.text, "plain", utf8))
    template.attach(MIMEText(sample.html, "html", utf8))
    raw = template.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for index in range(count):
            to = sample.addresses[index % len(sample.addresses)]
            key = uuid.uuid4().hex * 2  # 64 hex digits, as a row key
            message = raw.replace(b"@TO@", to.encode()).replace(key_mark.encode(), key.encode())
            client.sendmail(
                settings.DEFAULT_FROM_EMAIL, [to], message.replace(boundary_mark.encode(), uuid.uuid4().hex.encode())
            )


def webpush_loop(sample: Sample, vapid: Any, origin: str, count: int) -> None:
    """The push reference: http_ece per message, one keep-alive urllib3 connection, one VAPID header."""
    import http_ece  # type: ignore[import-untyped]  # no stubs
    import urllib3
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.e2e.servers.webpush import unb64url

    headers = vapid.sign({"sub": "mailto:bench@carnet.localhost", "aud": origin, "exp": int(time.time()) + 3600})
    with urllib3.PoolManager(maxsize=1) as pools:
        for index in range(count):
            endpoint, p256dh, auth = sample.subscriptions[index % len(sample.subscriptions)]
            body = http_ece.encrypt(
                sample.push_payload,
                private_key=ec.generate_private_key(ec.SECP256R1()),
                dh=unb64url(p256dh),
                auth_secret=unb64url(auth),
                version="aes128gcm",
            )
            response = pools.request(
                "POST",
                endpoint,
                body=body,
                headers={
                    **headers,
                    "Content-Encoding": "aes128gcm",
                    "TTL": "86400",
                    "Topic": f"ref{index}",
                    "Urgency": "normal",
                },
                timeout=10,
                retries=False,
            )
            if response.status != 201:
                raise RuntimeError(f"reference push refused: {response.status} {response.data!r}")


def sample_of(claims: list[tuple[str, list[Any]]], push_ids: set[int]) -> Sample:
    from notifications import rendering
    from notifications.delivery import _address

    rows = [r for _token, batch in claims for r in batch]
    emails = [r for r in rows if r.pk not in push_ids]
    pushes = [r for r in rows if r.pk in push_ids]
    addresses = [_address(r)[0] for r in emails] or ["bench@example.org"]
    first = emails[0] if emails else rows[0]
    env = rendering.envelope(first, to=addresses[0], first_name=_address(first)[1])
    payload = json.dumps(
        {"title": env.push_title, "body": env.push_body, "url": env.url, "tag": env.collapse_id}, ensure_ascii=False
    ).encode()
    subscriptions = []
    for row in pushes:
        endpoint, _first_name, p256dh, auth = _address(row)
        subscriptions.append((endpoint, p256dh, auth))
    return Sample(
        subject=env.subject,
        text=env.text or "text",
        html=env.html or "<p>html</p>",
        push_payload=payload,
        addresses=addresses,
        subscriptions=subscriptions,
    )


# --- the run ---------------------------------------------------------------------------------


def _vapid(directory: Path) -> tuple[Any, str, str]:
    """A fresh VAPID key: the object, its PEM file and its public key as the endpoint expects it."""
    from cryptography.hazmat.primitives import serialization
    from py_vapid import Vapid  # type: ignore[import-untyped]  # no stubs

    from tests.e2e.servers.webpush import b64url

    key = Vapid()
    key.generate_keys()
    pem = directory / "vapid-private.pem"
    pem.write_bytes(key.private_pem())
    public = key.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return key, str(pem), b64url(public)


def run(*, email: int, push: int, runs: int, command: str = "") -> list[Figure]:
    from django.conf import settings
    from django.test.utils import override_settings

    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        vapid, pem, public = _vapid(Path(tmp))
        servers = Servers(public)
        try:
            with override_settings(
                DEBUG=False,  # a worker runs without the debug cursor and its query log
                EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                EMAIL_HOST="127.0.0.1",
                EMAIL_PORT=servers.smtp_port,
                EMAIL_USE_TLS=False,
                EMAIL_HOST_USER="",
                EMAIL_HOST_PASSWORD="",
                EMAIL_TIMEOUT=10,
                WEBPUSH_VAPID_PRIVATE_KEY=pem,
                WEBPUSH_VAPID_SUBJECT="mailto:bench@carnet.localhost",
            ):
                batch = int(getattr(settings, "NOTIFY_BATCH_SIZE", 100))
                return _run(servers, vapid, email=email, push=push, runs=runs, batch=batch, command=command)
        finally:
            servers.close()


def _run(servers: Servers, vapid: Any, *, email: int, push: int, runs: int, batch: int, command: str) -> list[Figure]:
    from notifications import delivery

    email_ids = choose("email", email)
    push_ids = choose("webpush", push)
    if len(email_ids) < email or len(push_ids) < push:
        print(f"only {len(email_ids)} email and {len(push_ids)} push rows to send; measuring those", file=sys.stderr)
    phases = ("email", "push", "smtplib", "http_ece")
    times: dict[str, list[float]] = {name: [] for name in phases}
    cpu: dict[str, list[float]] = {name: [] for name in phases}  # this process's CPU seconds
    server_cpu: dict[str, list[float]] = {name: [] for name in phases}  # the loopback servers'
    database_cpu: dict[str, list[float]] = {name: [] for name in phases}  # this connection's PostgreSQL backend
    checks: list[dict[str, Any]] = []

    def measure(name: str, send: Any, keep: bool) -> Any:
        before, database_before = servers.ask("counts"), backend_cpu_seconds()
        start, cpu_start = time.perf_counter(), time.process_time()
        value = send()
        seconds, used = time.perf_counter() - start, time.process_time() - cpu_start
        after, database_after = servers.ask("counts"), backend_cpu_seconds()
        if keep:
            times[name].append(seconds)
            cpu[name].append(used)
            server_cpu[name].append(after["cpu_seconds"] - before["cpu_seconds"])
            if database_before is not None and database_after is not None:
                database_cpu[name].append(database_after - database_before)
        return value

    def deliver(claims: list[tuple[str, list[Any]]]) -> int:
        stats = delivery.Stats()
        for token, rows in claims:
            stats.add(delivery.outbox_deliver(token, rows))
        return stats.sent

    with borrowed(email_ids + push_ids, servers) as devices:
        for index in range(1 + runs):  # the first run warms up (imports, templates, connections)
            keep = index > 0
            servers.ask("reset")
            claims = {"email": claim(email_ids, batch), "push": claim(push_ids, batch)}
            sent = {channel: measure(channel, lambda c=claims[channel]: deliver(c), keep) for channel in claims}
            counts = servers.ask("counts")
            checks.append({"sent": sent, **counts})
            sample = sample_of(claims["email"] + claims["push"], set(push_ids))
            if email_ids:
                measure("smtplib", lambda sample=sample: smtplib_loop(sample, servers.smtp_port, len(email_ids)), keep)
            if push_ids:
                measure(
                    "http_ece",
                    lambda sample=sample: webpush_loop(sample, vapid, servers.push_origin, len(push_ids)),
                    keep,
                )
            after = servers.ask("counts")
            checks[-1]["reference_email"] = after["email"] - counts["email"]
            checks[-1]["reference_push"] = after["push"] - counts["push"]
            checks[-1]["reference_rejected"] = after["push_rejected"] - counts["push_rejected"]
            _check(checks[-1], len(email_ids), len(push_ids))
    counts = scale_counts()
    scale = (
        f"{len(email_ids):,} email + {len(push_ids):,} Web Push ({devices:,} devices), {counts['patients']:,} patients"
    )
    figures = []
    for channel, reference, n, label in (
        ("email", "smtplib", len(email_ids), "bare smtplib loop (no pipelining), one connection, prebuilt MIME"),
        ("push", "http_ece", len(push_ids), "http_ece + one keep-alive urllib3 connection, VAPID signed once"),
    ):
        if not n:
            continue
        rate = n / median(times[channel])
        reference_rate = n / median(times[reference])
        ratio = ratio_of(rate, reference_rate)
        figures.append(
            Figure(
                bench="delivery",
                name=f"{channel} throughput, one process",
                unit="msg/s",
                median=rate,
                target=f"≥ {TARGET_PER_S:.0f} msg/s per process",
                met=rate >= TARGET_PER_S,
                runs=runs,
                reference=label,
                reference_median=reference_rate,
                ratio=ratio,
                ratio_target=f"≥ {RATIO_TARGET}" if channel == "email" else "",
                ratio_met=ratio >= RATIO_TARGET if channel == "email" else None,
                scale=scale,
                command=command,
                extra={
                    "messages": n,
                    "batch": batch,
                    "in_flight": delivery.IN_FLIGHT,  # accepted messages a killed worker may leave unmarked
                    # CPU per message of this process (the worker) and of the loopback servers, load aside.
                    "worker_cpu_ms_per_message": 1000 * median(cpu[channel]) / n,
                    "server_cpu_ms_per_message": 1000 * median(server_cpu[channel]) / n,
                    "reference_cpu_ms_per_message": 1000 * median(cpu[reference]) / n,
                    "reference_server_cpu_ms_per_message": 1000 * median(server_cpu[reference]) / n,
                    # The PostgreSQL backend's CPU per message (the outcome and its audit row), when
                    # the server runs on this machine: a figure the load of other processes does not move.
                    "database_cpu_ms_per_message": (
                        1000 * median(database_cpu[channel]) / n if database_cpu[channel] else None
                    ),
                    "run_seconds": times[channel],
                    "reference_seconds": times[reference],
                    "checks": checks,
                },
            )
        )
    return figures


def backend_cpu_seconds() -> float | None:
    """CPU time so far of this connection's PostgreSQL backend process, if it runs on this machine."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # another machine's process (or no /proc)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _check(check: dict[str, Any], email: int, push: int) -> None:
    """What the servers received is exactly what delivery says it sent, once each."""
    problems = []
    if check["sent"] != {"email": email, "push": push}:
        problems.append(f"sent {check['sent']}, wanted {email} email and {push} push")
    if check["email"] != email or check["email_distinct"] != email:
        problems.append(f"SMTP received {check['email']} ({check['email_distinct']} distinct) of {email}")
    if check["push"] != push or check["push_distinct"] != push or check["push_rejected"]:
        problems.append(
            f"push endpoint received {check['push']} ({check['push_distinct']} distinct) of {push}, "
            f"rejected {check['push_rejected']}: {check['push_rejections']}"
        )
    if check["reference_email"] != email or check["reference_push"] != push or check["reference_rejected"]:
        problems.append(f"references delivered {check['reference_email']} email, {check['reference_push']} push")
    if problems:
        raise RuntimeError("; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--email", type=int, default=5000)
    parser.add_argument("--push", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    setup_django()
    report(
        "delivery",
        run(
            email=args.email,
            push=args.push,
            runs=args.runs,
            command=f"python bench/bench_delivery.py --email {args.email} --push {args.push} --runs {args.runs}",
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
