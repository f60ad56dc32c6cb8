#!/usr/bin/env python
"""Sweep: claim and hand over one minute's due messages (10,000), and the worker's peak memory.

    python bench/bench_sweep.py --messages 10000 --runs 3

``--messages`` pending reminder rows of the outbox are made due (``next_attempt_at`` a few
seconds ago) before each run; every other row stays where the plan put it, in the future, so
the table keeps its size (a million patients' reminders). A run is the production drain
(``notifications.delivery.outbox_drain``: claims of ``NOTIFY_BATCH_SIZE`` rows with
``SELECT … FOR UPDATE SKIP LOCKED`` and a lease, the checks against the world, the hand-over
to the transport, the per-row "sent" mark and the audit rows). The transports are replaced by
one that accepts at once: delivery itself is ``bench_delivery.py``.

Reference: the raw SQL claim of the same rows in the same batches (one ``UPDATE … WHERE id IN
(expired leases UNION ALL due rows, each SELECT … FOR UPDATE SKIP LOCKED) RETURNING …``), each
batch then marked sent in one UPDATE.
Targets: under 2 s; ratio ≤ 1.5; peak RSS of the sweeping process under 300 MB.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Figure,
    median,
    peak_rss_mb,
    ratio_of,
    repeat,
    report,
    reset_peak_rss,
    scale_counts,
    setup_django,
)

TARGET_SECONDS = 2.0
RATIO_TARGET = 1.5
RSS_TARGET_MB = 300.0
TABLE = "notifications_outboxmessage"


class AcceptingTransport:
    """Takes every message at once (the hand-over without the network)."""

    channel = "bench"

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, message: Any) -> str:
        return f"bench:{message.key[:16]}"


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
            "WHERE state IN ('pending', 'sending') AND next_attempt_at <= now() + interval '1 hour' "
            "AND NOT (id = ANY(%s))",
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
    """The reference: claim every due row with raw SQL in batches, then mark each batch sent."""
    from django.db import connection, transaction

    claimed = 0
    while True:
        token = uuid.uuid4().hex
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"WITH expired AS (SELECT id FROM {TABLE} WHERE state = 'sending' "
                "AND claimed_until < now() ORDER BY claimed_until, id LIMIT %s FOR UPDATE SKIP LOCKED), "
                f"due AS (SELECT id FROM {TABLE} WHERE state = 'pending' AND next_attempt_at <= now() "
                "ORDER BY next_attempt_at, device_id, id LIMIT %s FOR UPDATE SKIP LOCKED) "
                f"UPDATE {TABLE} o SET state = 'sending', claim_token = %s, "
                "claimed_until = now() + interval '300 seconds', updated_at = now() "
                "WHERE o.id IN (SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT %s) RETURNING o.*",
                [batch, batch, token, batch],
            )
            rows = cursor.fetchall()
        if not rows:
            return claimed
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET state = 'sent', sent_at = now(), claimed_until = NULL "
                "WHERE claim_token = %s AND state = 'sending'",
                [token],
            )
        claimed += len(rows)


def run(*, messages: int, runs: int, command: str = "") -> list[Figure]:
    from notifications import delivery

    original = delivery.transport_for
    delivery.transport_for = lambda channel: AcceptingTransport()  # type: ignore[assignment]
    try:
        return _run(messages=messages, runs=runs, command=command)
    finally:
        delivery.transport_for = original


def _run(*, messages: int, runs: int, command: str) -> list[Figure]:
    from django.conf import settings

    from notifications import delivery

    ids = choose_rows(messages)
    if len(ids) < messages:
        print(f"only {len(ids)} reminder rows in the outbox; measuring those", file=sys.stderr)
    batch = int(getattr(settings, "NOTIFY_BATCH_SIZE", 100))
    handed: list[int] = []

    def sweep() -> None:
        stats = delivery.outbox_drain(batch_size=batch, time_budget=600)
        handed.append(stats.sent + stats.cancelled)

    reset_peak_rss()
    baseline = peak_rss_mb()
    times = repeat(sweep, runs=runs, warmup=1, setup=lambda: make_due(ids))
    peak = peak_rss_mb()
    reference = repeat(lambda: raw_claim(batch), runs=runs, warmup=1, setup=lambda: make_due(ids))
    counts = scale_counts()
    scale = f"{len(ids):,} due of {counts['outbox']:,} outbox rows, {counts['patients']:,} patients"
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
            reference="raw SQL claim (+ one bulk sent mark per batch)",
            reference_median=median(reference),
            ratio=ratio,
            ratio_target=f"≤ {RATIO_TARGET}",
            ratio_met=ratio <= RATIO_TARGET,
            scale=scale,
            command=command,
            extra={
                "batch": batch,
                "handed_over": handed,
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
            extra={"rss_before_sweeps_mib": baseline},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    setup_django()
    report(
        "sweep",
        run(
            messages=args.messages,
            runs=args.runs,
            command=f"python bench/bench_sweep.py --messages {args.messages} --runs {args.runs}",
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
