"""Celery tasks of the outbox: thin, idempotent, re-reading the database.

Beat runs ``outbox_sweep`` every minute. There are no far-future ETA tasks: the database holds
``send_at``. The sweep claims what is due, one statement per batch, and hands each batch to the
workers as an ``outbox_deliver_batch`` task carrying the claim token and the row ids; the worker
renews the lease, re-reads the rows and sends them. A batch whose task never runs (a broker
restarted without persistence) is claimed again by a later sweep once its hand-over lease runs
out; a task that runs late finds its rows claimed under another token and does nothing. So an
extra task, a redelivered one or a second beat costs nothing but a few empty reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task, shared_task

from notifications import delivery


def publisher(producer: Any = None) -> Callable[[str, list[int]], None]:
    """The sweep's hand-over: one ``outbox_deliver_batch`` task per claimed batch, on ``producer``."""

    def hand_over(token: str, ids: list[int]) -> None:
        # A short argsrepr: Celery would otherwise format every id for the message headers.
        outbox_deliver_batch.apply_async(  # type: ignore[call-arg]  # argsrepr: a Celery option the stubs lack
            (token, ids), producer=producer, argsrepr=f"({token!r}, <{len(ids)} ids>)"
        )

    return hand_over


@shared_task(bind=True, name="notifications.tasks.outbox_sweep", acks_late=True, ignore_result=True)
def outbox_sweep(self: Task[Any, Any]) -> int:
    # One broker connection for every batch of the sweep.
    with self.app.producer_or_acquire() as producer:
        return delivery.outbox_sweep(hand_over=publisher(producer)).claimed


@shared_task(name="notifications.tasks.outbox_deliver_batch", acks_late=True, ignore_result=True)
def outbox_deliver_batch(token: str, ids: list[int]) -> int:
    return delivery.outbox_deliver_claimed(token=token, ids=ids).sent


@shared_task(name="notifications.tasks.outbox_drain", acks_late=True, ignore_result=True)
def outbox_drain() -> int:
    """Claim and send here until nothing is due: a manual catch-up (``celery call``), and the
    consumer of drain messages queued before the sweep handed batches over."""
    return delivery.outbox_drain().sent
