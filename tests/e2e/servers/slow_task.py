"""A task that runs for as long as it is told, for tests/e2e/test_broker_restart.py: a worker
started with ``-I tests.e2e.servers.slow_task`` registers it; nothing else does."""

from __future__ import annotations

import time
from pathlib import Path

from celery import shared_task


@shared_task(name="tests.e2e.slow", acks_late=True)
def slow(marker_path: str, token: str, seconds: float) -> str:
    """Write ``start <token>``, sleep, write ``done <token>`` to ``marker_path``."""
    marker = Path(marker_path)
    with marker.open("a", encoding="utf-8") as out:
        out.write(f"start {token}\n")
    time.sleep(seconds)
    with marker.open("a", encoding="utf-8") as out:
        out.write(f"done {token}\n")
    return token
