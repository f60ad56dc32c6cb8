"""A probe task that proves the Celery wiring end to end (broker, worker, beat).

``backend`` is not an installed app, so ``autodiscover_tasks`` does not load this module: a worker
registers it only when started with ``-I backend.tasks``. Production workers never carry it.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from celery import shared_task


@shared_task(name="backend.tasks.ping")
def ping(marker_path: str, token: str) -> str:
    """Append ``token``, the worker's pid and how many objects its collector leaves frozen
    (``backend.heap``: the startup heap, frozen by ``backend.celery``) to ``marker_path``; the
    caller reads it back."""
    with Path(marker_path).open("a", encoding="utf-8") as marker:
        marker.write(f"{token} {os.getpid()} {gc.get_freeze_count()}\n")
    return token
