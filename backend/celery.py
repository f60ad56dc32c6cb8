"""The Celery application.

Worker settings follow the "never lose a reminder" rule: a task is acknowledged only after it
ran (acks_late), a worker killed mid-task gives its message back (task_reject_on_worker_lost),
and each worker process holds one message at a time (prefetch 1). Redis only carries work that
can be rebuilt from the database: the outbox holds ``send_at``, beat runs a sweep.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

logger = logging.getLogger("carnet.worker")

app = Celery("carnet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _freeze_parent_heap(**_: Any) -> None:
    """The worker's startup heap (Django, the apps, the tasks) leaves the collector's walks, before
    the prefork pool forks its children (backend.heap)."""
    from backend.heap import freeze_startup_heap

    freeze_startup_heap()


@worker_init.connect
def _log_rules(**_: Any) -> None:
    """Say which rules re-plan here: the plain ones are ~1.45x slower on the engine (a deploy that
    changed a rule and has not run ``python -m scheduling.compile_rules build`` yet)."""
    from scheduling.rules import _native

    (logger.info if _native.active() else logger.warning)("%s", _native.describe())


@worker_process_init.connect
def _freeze_child_heap(**_: Any) -> None:
    """What a pool child set up after the fork joins the frozen heap too."""
    from backend.heap import freeze_startup_heap

    freeze_startup_heap()
