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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task, shared_task

from notifications import delivery

# Tasks sent to Redis in one pipelined round trip (kombu's producer batch): a publish alone was
# ~2 ms, half of it the round trip and the Redis client kombu makes per command
# (bench/bench_sweep.py). A batch waits at most for the claims of this many batches.
PUBLISH_GROUP = 10


def publisher(producer: Any = None) -> Callable[[str, list[int]], None]:
    """The sweep's hand-over: one ``outbox_deliver_batch`` task per claimed batch, on ``producer``."""

    def hand_over(token: str, ids: list[int]) -> None:
        # A short argsrepr: Celery would otherwise format every id for the message headers.
        outbox_deliver_batch.apply_async(  # type: ignore[call-arg]  # argsrepr: a Celery option the stubs lack
            (token, ids), producer=producer, argsrepr=f"({token!r}, <{len(ids)} ids>)"
        )

    return hand_over


@contextmanager
def grouped_publisher(producer: Any) -> Iterator[Callable[[str, list[int]], None]]:
    """``publisher(producer)`` whose tasks go out ``PUBLISH_GROUP`` at a time, the rest on exit.

    A failed round trip raises from the hand-over that filled the group (its rows are released)
    or from the exit; the other batches of that group stay claimed until their hand-over lease
    runs out, then a later sweep claims them again, as for any task lost with the broker.
    Transports without batches (``memory://``) publish each task at once.
    """
    with producer.batch(max_size=PUBLISH_GROUP):
        yield publisher(producer)


@shared_task(bind=True, name="notifications.tasks.outbox_sweep", acks_late=True, ignore_result=True)
def outbox_sweep(self: Task[Any, Any]) -> int:
    # One broker connection for every batch of the sweep.
    with self.app.producer_or_acquire() as producer, grouped_publisher(producer) as hand_over:
        return delivery.outbox_sweep(hand_over=hand_over).claimed


@shared_task(name="notifications.tasks.outbox_deliver_batch", acks_late=True, ignore_result=True)
def outbox_deliver_batch(token: str, ids: list[int]) -> int:
    return delivery.outbox_deliver_claimed(token=token, ids=ids).sent


@shared_task(name="notifications.tasks.outbox_drain", acks_late=True, ignore_result=True)
def outbox_drain() -> int:
    """Claim and send here until nothing is due: a manual catch-up (``celery call``), and the
    consumer of drain messages queued before the sweep handed batches over."""
    return delivery.outbox_drain().sent
