"""Issue 5, item 7: reminders are never lost and never sent twice, against real services.

PostgreSQL and Redis come from the test command (``bash scripts/test``); the SMTP server
(aiosmtpd) and the Web Push endpoint (which checks VAPID and decrypts every payload) run in
this process on loopback; Celery workers and beat run as real subprocesses. Each test counts
what the receiving servers got, by Message-ID (email) and by Topic (push), and prints its
figures (run with ``-s`` to see them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Count
from django.utils import timezone

from notifications import delivery, services
from notifications.models import Device, OutboxMessage, OutboxState
from patients.models import CareTeam, Patient
from scheduling.models import PlanItem
from tests.e2e.servers.smtp import SmtpServer
from tests.e2e.servers.stack import RedisServer, Stack, flush_redis, private_redis_db, wait_until
from tests.e2e.servers.webpush import PushServer

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TERMINAL = (OutboxState.SENT, OutboxState.DEAD, OutboxState.CANCELLED)


# --- fixtures (local: tests/e2e has no conftest of its own) ----------------------------------


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def vapid(tmp_path: Path) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from pywebpush import Vapid

    from tests.e2e.servers.webpush import b64url

    key = Vapid()
    key.generate_keys()
    pem = tmp_path / "vapid.pem"
    pem.write_bytes(key.private_pem())
    raw = key.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"pem": str(pem), "public": b64url(raw)}


@pytest.fixture
def push(vapid: dict[str, str]) -> Iterator[PushServer]:
    server = PushServer(vapid["public"]).start()
    yield server
    server.stop()


@pytest.fixture
def broker() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        pytest.skip("needs Redis: set REDIS_URL=redis://…")
    url = private_redis_db(url)
    flush_redis(url)
    return url


def _env(smtp: SmtpServer, vapid: dict[str, str], **extra: Any) -> dict[str, str]:
    env = {
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_TIMEOUT": "5",
        "WEBPUSH_VAPID_PRIVATE_KEY": vapid["pem"],
        "NOTIFY_WEBPUSH_ALLOW_HTTP": "1",
        "NOTIFY_SWEEP_INTERVAL_SECONDS": "1",
        "NOTIFY_BATCH_SIZE": "50",
        "NOTIFY_SWEEP_FANOUT": "6",
        "NOTIFY_SWEEP_BUDGET_SECONDS": "20",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Any]:
    stacks: list[Stack] = []

    def make(broker_url: str, env: dict[str, str]) -> Stack:
        stack = Stack(tmp_path, broker_url, **env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


# --- seeding through the real planning path ---------------------------------------------------


def seed(n_email: int, n_push: int, push: PushServer | None = None, *, due: date | None = None) -> list[Patient]:
    """``n_email`` + ``n_push`` patients, each with one calcium check whose day-of reminder is due now.

    Plan items and patients are bulk-inserted; the outbox rows come from ``outbox_sync`` itself,
    run "two days ago" so the reminder of yesterday's item was still ahead when it was planned.
    """
    team = CareTeam.objects.create(name=f"Team {time.monotonic_ns()}")
    today = timezone.localdate()
    due = due or today - timedelta(days=1)
    patients = Patient.objects.bulk_create(
        [
            Patient(
                care_team=team,
                first_name="Jeanne",
                last_name=f"P{i}",
                birth_date=date(1950, 1, 1),
                sex="F",
                email=f"p{i}@example.org" if i < n_email else "",
                consent_email=i < n_email,
                consent_push=i >= n_email,
                language="en" if i % 3 == 0 else "fr",
            )
            for i in range(n_email + n_push)
        ],
        batch_size=2000,
    )
    PlanItem.objects.bulk_create(
        [
            PlanItem(patient=p, key=f"calcium_check:{p.pk}", kind="calcium_check", rule="CA-05", due=due, status="due")
            for p in patients
        ],
        batch_size=2000,
    )
    if n_push:
        assert push is not None
        devices = []
        for p in patients[n_email:]:
            sub = push.subscribe(f"p{p.pk}")
            devices.append(
                Device(patient=p, channel="webpush", endpoint=sub.endpoint, p256dh=sub.p256dh, auth=sub.auth)
            )
        Device.objects.bulk_create(devices, batch_size=2000)
    planned_at = timezone.now() - timedelta(days=2)
    for start in range(0, len(patients), 1000):
        services.outbox_sync(patients=patients[start : start + 1000], now=planned_at)
    return patients


def terminal() -> int:
    return OutboxMessage.objects.filter(state__in=TERMINAL).count()


def report(name: str, **figures: Any) -> None:
    print(f"\n[delivery {name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def assert_exactly_once(smtp: SmtpServer, push: PushServer | None, n_email: int, n_push: int) -> tuple[int, int]:
    ids = smtp.ids()
    expected = set(OutboxMessage.objects.filter(channel="email").values_list("provider_id", flat=True))
    assert set(ids) == expected
    assert len(ids) == n_email, f"email delivered {len(ids)} of {n_email}"
    duplicates = smtp.duplicates()
    push_dupes = 0
    if push is not None:
        assert len(push.topics()) == n_push, f"push delivered {len(push.topics())} of {n_push}"
        push_dupes = push.duplicates()
        assert not push.rejected, push.rejected[:3]
    return duplicates, push_dupes


# --- (a) 10,000 due reminders, each delivered exactly once ------------------------------------


@pytest.mark.redis
def test_a_ten_thousand_reminders_delivered_exactly_once(
    smtp: SmtpServer, push: PushServer, vapid: dict[str, str], broker: str, stack_factory: Any
) -> None:
    total_wanted = int(os.environ.get("CARNET_E2E_REMINDERS", "10000"))
    n_push = total_wanted // 5
    n_email = total_wanted - n_push
    t0 = time.monotonic()
    seed(n_email, n_push, push)
    seeded = time.monotonic() - t0
    total = OutboxMessage.objects.count()
    assert total == n_email + n_push
    stack = stack_factory(broker, _env(smtp, vapid, NOTIFY_BATCH_SIZE=100, NOTIFY_SWEEP_INTERVAL_SECONDS=2))
    t1 = time.monotonic()
    # As many sending processes as CPUs (at least 4): sending is CPU-bound (MIME, TLS-free SMTP, ECE).
    per_worker = max(2, (os.cpu_count() or 2) // 2)
    for i in range(2):
        stack.worker(f"w{i}", concurrency=per_worker)
    stack.beat("beat")
    done = wait_until(lambda: stack.alive() and terminal() == total, timeout=600, interval=0.5)
    took = time.monotonic() - t1
    assert done, f"{terminal()} of {total} delivered\n{stack.logs()}"
    assert OutboxMessage.objects.filter(state=OutboxState.SENT).count() == total
    dupes, push_dupes = assert_exactly_once(smtp, push, n_email, n_push)
    report(
        "a",
        reminders=total,
        email=smtp.count,
        push=push.count,
        duplicates=dupes + push_dupes,
        seed_s=round(seeded, 1),
        deliver_s=round(took, 1),
        per_s=round(total / took),
    )
    assert dupes == push_dupes == 0


# --- (b) kill -9 of a worker mid-batch: none lost --------------------------------------------


@pytest.mark.redis
def test_b_worker_killed_mid_batch_loses_nothing(
    smtp: SmtpServer, vapid: dict[str, str], broker: str, stack_factory: Any
) -> None:
    n = 2000
    seed(n, 0)
    smtp.delay = 0.002  # a slow server: the kill lands mid-batch
    stack = stack_factory(broker, _env(smtp, vapid, NOTIFY_LEASE_SECONDS=5, NOTIFY_BATCH_SIZE=25))
    victim = stack.worker("victim", concurrency=4)
    beat = stack.beat("beat")
    assert wait_until(lambda: smtp.count >= n // 4, timeout=60), stack.logs()
    stack.kill9(victim)
    killed_at = smtp.count
    stuck = OutboxMessage.objects.filter(state=OutboxState.SENDING).count()
    t0 = time.monotonic()
    stack.worker("survivor", concurrency=4)
    done = wait_until(lambda: stack.alive() and terminal() == n, timeout=120, interval=0.5)
    assert done, f"{terminal()} of {n}\n{stack.logs()}"
    assert beat.poll() is None
    dupes, _ = assert_exactly_once(smtp, None, n, 0)
    report(
        "b",
        reminders=n,
        delivered_before_kill=killed_at,
        claimed_by_dead_worker=stuck,
        recovered_s=round(time.monotonic() - t0, 1),
        lost=0,
        duplicates=dupes,
    )
    assert stuck > 0  # the kill really left leased rows behind
    # A duplicate needs the kill to land between the SMTP server's "250" and the commit that
    # records it; each of the 4 pool processes can have at most delivery.IN_FLIGHT (3) messages
    # there (the one the server accepts while the next goes out with its end, and the two accepted
    # before it whose marks share a statement; see delivery.CHAIN_DEPTH).
    assert dupes <= 4 * delivery.IN_FLIGHT


# --- (c) Redis restarted mid-run: all delivered after it returns ------------------------------


def test_c_redis_restart_mid_run(smtp: SmtpServer, vapid: dict[str, str], tmp_path: Path, stack_factory: Any) -> None:
    if not RedisServer.available():
        pytest.skip("redis-server is not on PATH")
    redis = RedisServer(tmp_path / "redis").start()
    try:
        n = 1500
        seed(n, 0)
        smtp.delay = 0.002
        stack = stack_factory(redis.url, _env(smtp, vapid))
        stack.worker("w1", concurrency=3)
        stack.beat("beat")
        assert wait_until(lambda: smtp.count >= n // 4, timeout=60), stack.logs()
        redis.kill()
        at_kill = smtp.count
        time.sleep(3)  # Redis is down: queued tasks are gone with it (no persistence)
        during = smtp.count
        redis.start()
        t0 = time.monotonic()
        done = wait_until(lambda: stack.alive() and terminal() == n, timeout=150, interval=0.5)
        assert done, f"{terminal()} of {n}\n{stack.logs()}"
        dupes, _ = assert_exactly_once(smtp, None, n, 0)
        report(
            "c",
            reminders=n,
            delivered_at_kill=at_kill,
            delivered_while_down=during - at_kill,
            finished_after_restart_s=round(time.monotonic() - t0, 1),
            duplicates=dupes,
        )
        assert dupes == 0
    finally:
        redis.kill()


# --- (d) two beat processes at once: no duplicates --------------------------------------------


@pytest.mark.redis
def test_d_two_beats_no_duplicates(
    smtp: SmtpServer, push: PushServer, vapid: dict[str, str], broker: str, stack_factory: Any
) -> None:
    n_email, n_push = 1500, 500
    seed(n_email, n_push, push)
    stack = stack_factory(broker, _env(smtp, vapid, NOTIFY_BATCH_SIZE=20))
    stack.worker("w1", concurrency=4)
    stack.worker("w2", concurrency=4)
    stack.beat("beat1")
    stack.beat("beat2")
    done = wait_until(lambda: stack.alive() and terminal() == n_email + n_push, timeout=120, interval=0.5)
    assert done, stack.logs()
    time.sleep(3)  # both beats keep firing: nothing more may arrive
    dupes, push_dupes = assert_exactly_once(smtp, push, n_email, n_push)
    runs = OutboxMessage.objects.filter(state=OutboxState.SENT).count()
    report("d", reminders=n_email + n_push, sent=runs, duplicates=dupes + push_dupes)
    assert dupes == push_dupes == 0


# --- (e) SMTP down for a while: retried with backoff, delivered once it returns ----------------


@pytest.mark.redis
def test_e_smtp_outage_retries_and_delivers(
    smtp: SmtpServer, vapid: dict[str, str], broker: str, stack_factory: Any
) -> None:
    n = 300
    seed(n, 0)
    smtp.stop()
    stack = stack_factory(
        broker,
        _env(
            smtp,
            vapid,
            NOTIFY_RETRY_BASE_SECONDS=1,
            NOTIFY_RETRY_MAX_SECONDS=4,
            NOTIFY_MAX_ATTEMPTS=50,
            EMAIL_TIMEOUT=1,
        ),
    )
    stack.worker("w1", concurrency=3)
    stack.beat("beat")
    assert wait_until(
        lambda: OutboxMessage.objects.filter(attempts__gte=2, state=OutboxState.PENDING).count() == n, timeout=60
    ), stack.logs()
    time.sleep(2)
    smtp.start()
    t0 = time.monotonic()
    done = wait_until(lambda: stack.alive() and terminal() == n, timeout=90, interval=0.5)
    assert done, f"{terminal()} of {n}\n{stack.logs()}"
    assert OutboxMessage.objects.filter(state=OutboxState.SENT).count() == n
    dupes, _ = assert_exactly_once(smtp, None, n, 0)
    attempts = list(OutboxMessage.objects.values_list("attempts", flat=True))
    report(
        "e",
        reminders=n,
        lost=0,
        duplicates=dupes,
        min_attempts=min(attempts),
        max_attempts=max(attempts),
        drained_after_return_s=round(time.monotonic() - t0, 1),
    )
    assert dupes == 0 and min(attempts) >= 3  # at least two failures, then the success


# --- (f) push endpoint answers 410: device deactivated, no retry storm -------------------------


@pytest.mark.redis
def test_f_push_410_deactivates_without_retry_storm(
    smtp: SmtpServer, push: PushServer, vapid: dict[str, str], broker: str, stack_factory: Any
) -> None:
    n = 40
    patients = seed(0, n, push)
    # Each device also has a second reminder due (another item) that must not be tried.
    more = [
        PlanItem(
            patient=p,
            key=f"vitd:{p.pk}",
            kind="vitamin_d_dose",
            protocol="vitamin_d_50000iu",
            rule="VITD-03",
            due=timezone.localdate() - timedelta(days=1),
            status="due",
        )
        for p in patients
    ]
    PlanItem.objects.bulk_create(more)
    services.outbox_sync(patients=patients, now=timezone.now() - timedelta(days=2))
    assert OutboxMessage.objects.count() == 2 * n
    push.gone.update(path for path in push.subscriptions)
    stack = stack_factory(broker, _env(smtp, vapid, NOTIFY_RETRY_BASE_SECONDS=1))
    stack.worker("w1", concurrency=3)
    stack.beat("beat")
    done = wait_until(lambda: stack.alive() and terminal() == 2 * n, timeout=60)
    assert done, stack.logs()
    time.sleep(4)  # four more sweeps: nothing may be retried
    assert Device.objects.filter(active=True).count() == 0
    assert len(push.rejected) == n  # exactly one request per device
    assert {status for _path, status, _ in push.rejected} == {410}
    states = dict(OutboxMessage.objects.filter(kind="reminder").values_list("state").annotate(n=Count("pk")))
    report("f", devices=n, push_requests=len(push.rejected), rows=states)
    assert states == {"dead": n, "cancelled": n}


# --- (g) a message whose item was done before its send time is not sent ------------------------


@pytest.mark.redis
def test_g_item_done_before_send_time_not_sent(
    smtp: SmtpServer, vapid: dict[str, str], broker: str, stack_factory: Any
) -> None:
    n = 60
    patients = seed(n, 0)
    soon = timezone.now() + timedelta(seconds=6)
    OutboxMessage.objects.update(send_at=soon, next_attempt_at=soon)
    stack = stack_factory(broker, _env(smtp, vapid))
    stack.worker("w1", concurrency=2)
    stack.beat("beat")
    # A third of the items are done and re-planned (the service path: rows cancelled at once);
    # a third are closed without a re-plan reaching the outbox (the send-time check catches it).
    replanned, silent = patients[: n // 3], patients[n // 3 : 2 * n // 3]
    PlanItem.objects.filter(patient__in=replanned + silent).update(status="done", closed_at=timezone.now())
    services.outbox_sync(patients=replanned)
    done = wait_until(lambda: stack.alive() and terminal() == n, timeout=60)
    assert done, stack.logs()
    assert smtp.count == n - 2 * (n // 3)
    sent_to = {m["to"][0] for m in smtp.messages}
    assert not sent_to & {p.email for p in replanned + silent}
    reasons = dict(OutboxMessage.objects.filter(state="cancelled").values_list("closed_reason").annotate(n=Count("pk")))
    report("g", reminders=n, sent=smtp.count, cancelled=reasons)
    assert reasons == {"replanned": n // 3, "item_closed": n // 3}
