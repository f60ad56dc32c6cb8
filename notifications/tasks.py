"""Celery tasks of the outbox: thin, idempotent, re-reading the database.

Beat runs ``outbox_sweep`` every minute. There are no far-future ETA tasks: the database holds
``send_at``. When the backlog is larger than a batch, the sweep fans out ``outbox_drain`` tasks
so every worker helps; claims are safe under any concurrency, so an extra drain or a second
beat costs nothing but a few empty claims.
"""

from __future__ import annotations

import math

from celery import shared_task
from django.conf import settings

from notifications import delivery


@shared_task(name="notifications.tasks.outbox_sweep", acks_late=True, ignore_result=True)
def outbox_sweep() -> int:
    backlog = delivery.outbox_backlog()
    batch = int(getattr(settings, "NOTIFY_BATCH_SIZE", 100))
    fanout = min(int(getattr(settings, "NOTIFY_SWEEP_FANOUT", 4)), math.ceil(backlog / batch) - 1)
    for _ in range(max(0, fanout)):
        outbox_drain.delay()
    return delivery.outbox_sweep().sent


@shared_task(name="notifications.tasks.outbox_drain", acks_late=True, ignore_result=True)
def outbox_drain() -> int:
    return delivery.outbox_drain().sent
