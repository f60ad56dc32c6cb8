"""The sweep's hand-over publishes its delivery tasks to Redis in pipelined groups."""

from __future__ import annotations

from typing import Any

import pytest

from notifications import tasks

pytestmark = pytest.mark.redis


def _queued(queue: Any) -> list[tuple[str, list[int]]]:
    tasks_args = []
    while (message := queue.get(no_ack=True)) is not None:
        assert message.headers["task"] == "notifications.tasks.outbox_deliver_batch"
        args, _kwargs, _embed = message.decode()
        tasks_args.append((args[0], args[1]))
    return tasks_args


def test_tasks_go_out_a_group_at_a_time_and_the_rest_on_exit(task_queue: tuple[Any, Any]) -> None:
    producer, queue = task_queue
    batches = [(f"token-{n}", list(range(n * 100, n * 100 + 100))) for n in range(2 * tasks.PUBLISH_GROUP + 3)]
    with tasks.grouped_publisher(producer) as hand_over:
        for token, ids in batches[: tasks.PUBLISH_GROUP - 1]:
            hand_over(token, ids)
        assert _count(queue) == 0  # still buffered
        for token, ids in batches[tasks.PUBLISH_GROUP - 1 :]:
            hand_over(token, ids)
        assert _count(queue) == 2 * tasks.PUBLISH_GROUP  # two full groups sent
    # Redis lists are consumed from the other end: the first published comes out first.
    assert _queued(queue) == batches


def _count(queue: Any) -> int:
    """Messages waiting in Redis (the queue is a list named after it)."""
    return int(queue.channel.client.llen(queue.name))
