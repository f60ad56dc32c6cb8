#!/usr/bin/env python
"""Sweep: claim and hand over one minute's due messages (10,000), and the sweeping process's peak memory.

    python bench/bench_sweep.py --messages 10000 --runs 5 [--broker redis://127.0.0.1:6379/0]

Before each run, ``--messages`` reminder rows of the outbox are made due (``next_attempt_at`` a
few seconds ago); every other row stays where the plan put it (pending in the future, or sent),
so the table keeps its size. A run is what beat's task runs (``notifications.tasks.outbox_sweep``):
``delivery.outbox_sweep`` records the sweep, folds staff floods into digests, counts the rows in
flight, then claims batches of ``NOTIFY_BATCH_SIZE`` rows, one ``UPDATE … FOR UPDATE SKIP LOCKED …
RETURNING id`` statement each, and publishes one ``outbox_deliver_batch`` Celery task per batch
(token and ids) through ``tasks.grouped_publisher`` on one producer (``PUBLISH_GROUP`` tasks per
Redis round trip), as the task does.

The broker is a real Redis: ``--broker`` / ``$BENCH_BROKER_URL``, else a private ``redis-server``
the bench starts on a free loopback port (no persistence) and stops. No worker runs: after each
run the queued tasks are counted and purged. Only without ``redis-server`` does it fall back to
kombu's in-memory transport (``memory://``), which leaves out the network round trip of each
publish; the figure then says so. Sending is ``bench_delivery.py``.

Reference: the raw SQL claim of the same rows in the same batches (the same statements, run
through the bare psycopg connection: no Django, no sweep bookkeeping, no hand-over).
Targets: under 2 s; ratio ≤ 1.5; peak RSS of the sweeping process (VmHWM, reset before the
sweeps) under 300 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Figure,
    median,
    peak_rss_mb,
    ratio_of,
    report,
    reset_peak_rss,
    scale_counts,
    setup_django,
    timed,
)

TARGET_SECONDS = 2.0
RATIO_TARGET = 1.5
RSS_TARGET_MB = 300.0
TABLE = "notifications_outboxmessage"


def choose_rows(count: int) -> list[int]:
    """``count`` reminder rows to make due each run; every other claimable row is moved a year on."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {TABLE} WHERE kind = 'reminder' AND state IN ('pending', 'sent') ORDER BY id LIMIT %s",
            [count],
        )
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            f"UPDATE {TABLE} SET next_attempt_at = next_attempt_at + interval '1 year' "
            "WHERE state = 'pending' AND next_attempt_at <= now() + interval '1 hour' AND NOT (id = ANY(%s))",
            [ids],
        )
        cursor.execute(
            f"UPDATE {TABLE} SET state = 'pending', next_attempt_at = now() + interval '1 year', claim_token = '', "
            "claimed_until = NULL WHERE state = 'sending' AND NOT (id = ANY(%s))",
            [ids],
        )
    return ids


def make_due(ids: list[int]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET state = 'pending', next_attempt_at = now() - interval '5 seconds', "
            "claim_token = '', claimed_until = NULL, sent_at = NULL, attempts = 0, closed_reason = '', "
            "provider_id = '' WHERE id = ANY(%s)",
            [ids],
        )


def raw_claim(batch: int) -> int:
    """The reference: claim every due row with raw SQL in batches of ``batch``, autocommit each.

    The sweep's statements (expired leases once, then due rows, each claim resuming after the
    last key of the previous one, one result row per claim), through the bare psycopg connection.
    """
    from django.db import connection

    raw = connection.connection  # the bare psycopg connection: no Django cursor wrapper
    with raw.cursor() as cursor:
        cursor.execute(
            f"WITH claimed AS (SELECT id FROM {TABLE} WHERE state = 'sending' AND claimed_until < now() "
            "ORDER BY claimed_until, id LIMIT %(n)s FOR UPDATE SKIP LOCKED), "
            f"updated AS (UPDATE {TABLE} o SET claim_token = %(token)s, claimed_until = now() + interval '60 s', "
            "updated_at = now() FROM claimed WHERE o.id = claimed.id RETURNING o.id) "
            "SELECT count(*) FROM updated",
            {"n": batch, "token": uuid.uuid4().hex},
        )
        claimed = int(cursor.fetchone()[0])
        after: tuple[Any, int, int] = (datetime(1, 1, 1, tzinfo=UTC), -1, -1)
        while True:
            cursor.execute(
                f"WITH claimed AS (SELECT id, next_attempt_at AS at, COALESCE(device_id, 0) AS dev FROM {TABLE} "
                "WHERE state = 'pending' AND next_attempt_at <= now() "
                "AND (next_attempt_at, COALESCE(device_id, 0), id) > (%(at)s, %(dev)s, %(id)s) "
                "ORDER BY next_attempt_at, COALESCE(device_id, 0), id LIMIT %(n)s FOR UPDATE SKIP LOCKED), "
                f"updated AS (UPDATE {TABLE} o SET state = 'sending', claim_token = %(token)s, "
                "claimed_until = now() + interval '60 s', updated_at = now() "
                "FROM claimed WHERE o.id = claimed.id RETURNING o.id) "
                "SELECT ARRAY(SELECT id FROM updated), at, dev, id FROM claimed "
                "ORDER BY at DESC, dev DESC, id DESC LIMIT 1",
                {"n": batch, "token": uuid.uuid4().hex, "at": after[0], "dev": after[1], "id": after[2]},
            )
            row = cursor.fetchone()
            if row is None:
                return claimed
            claimed += len(row[0])
            after = (row[1], row[2], row[3])


# --- the broker ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def broker(url: str | None) -> Iterator[str]:
    """``url``, else a private redis-server for the run, else kombu's in-memory transport."""
    if url:
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        yield "memory://"
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


# --- the run ---------------------------------------------------------------------------------


def run(
    *, messages: int, runs: int, broker_url: str | None = None, batch: int | None = None, command: str = ""
) -> list[Figure]:
    with broker(broker_url or os.environ.get("BENCH_BROKER_URL")) as url:
        return _run(messages=messages, runs=runs, url=url, batch=batch, command=command)


def _run(*, messages: int, runs: int, url: str, batch: int | None, command: str) -> list[Figure]:
    from django.conf import settings

    from backend.celery import app
    from notifications import delivery, tasks

    ids = choose_rows(messages)
    if len(ids) < messages:
        print(f"only {len(ids)} reminder rows in the outbox; measuring those", file=sys.stderr)
    batch = batch or int(getattr(settings, "NOTIFY_BATCH_SIZE", 100))
    in_flight = max(len(ids), int(getattr(settings, "NOTIFY_SWEEP_MAX_IN_FLIGHT", 20_000)))
    handed: list[int] = []
    queued: list[int] = []

    with app.connection_for_write(url) as connection:
        queue = app.amqp.queues[app.conf.task_default_queue](connection.default_channel)
        queue.declare()  # what a worker does at start: the broker routes the tasks to this queue
        queue.purge()
        producer = app.amqp.Producer(connection, auto_declare=False)

        def sweep() -> None:
            with tasks.grouped_publisher(producer) as hand_over:
                stats = delivery.outbox_sweep(
                    hand_over=hand_over, batch_size=batch, time_budget=600, max_in_flight=in_flight
                )
            handed.append(stats.claimed)
            queued.append(queue.purge() or 0)  # what the workers would take

        # Sweep and reference alternate, so both meet the same dead index entries: each claim
        # leaves one at the head of the due index until vacuum, and the first claim of every
        # sweep walks them.
        reset_peak_rss()
        baseline = peak_rss_mb()
        times: list[float] = []
        reference: list[float] = []
        for index in range(1 + runs):  # one warm-up round
            make_due(ids)
            seconds, _ = timed(sweep)
            make_due(ids)
            reference_seconds, _ = timed(lambda: raw_claim(batch))
            if index:
                times.append(seconds)
                reference.append(reference_seconds)
        peak = peak_rss_mb()
    make_due(ids)  # leave the rows due, not leased, for the next benchmark
    counts = scale_counts()
    scale = f"{len(ids):,} due of {counts['outbox']:,} outbox rows, {counts['patients']:,} patients"
    broker_name = url.split("://", 1)[0]
    notes = "" if broker_name == "redis" else f"hand-over to {url} (no network round trip), not Redis"
    ratio = ratio_of(median(times), median(reference))
    return [
        Figure(
            bench="sweep",
            name="claim + hand over",
            unit="s",
            median=median(times),
            target=f"< {TARGET_SECONDS:.0f} s",
            met=median(times) < TARGET_SECONDS,
            runs=runs,
            reference="raw SQL claim, same batches",
            reference_median=median(reference),
            ratio=ratio,
            ratio_target=f"≤ {RATIO_TARGET}",
            ratio_met=ratio <= RATIO_TARGET,
            scale=scale,
            command=command,
            notes=notes,
            extra={
                "batch": batch,
                "broker": broker_name,
                "handed_over": handed[1:],  # the warm-up round is not timed
                "tasks_queued": queued[1:],
                "run_seconds": times,
                "reference_seconds": reference,
                "messages_per_s": len(ids) / median(times),
            },
        ),
        Figure(
            bench="sweep",
            name="peak RSS of the sweeping process",
            unit="MiB",
            median=peak,
            target=f"< {RSS_TARGET_MB:.0f} MB",
            met=peak < RSS_TARGET_MB,
            runs=runs,
            scale=scale,
            command=command,
            notes="VmHWM of the bench process over the sweeps and the raw SQL references between them",
            extra={"rss_before_sweeps_mib": baseline},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--broker", default=None, help="broker URL (default: $BENCH_BROKER_URL, else a private Redis)")
    parser.add_argument("--batch", type=int, default=None, help="rows per claim (default: NOTIFY_BATCH_SIZE)")
    args = parser.parse_args(argv)
    setup_django()
    report(
        "sweep",
        run(
            messages=args.messages,
            runs=args.runs,
            broker_url=args.broker,
            batch=args.batch,
            command=f"python bench/bench_sweep.py --messages {args.messages} --runs {args.runs}"
            + (f" --batch {args.batch}" if args.batch else ""),
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
