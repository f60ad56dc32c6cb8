"""The Celery application.

Worker settings follow the "never lose a reminder" rule: a task is acknowledged only after it
ran (acks_late), a worker killed mid-task gives its message back (task_reject_on_worker_lost),
and each worker process holds one message at a time (prefetch 1). Redis only carries work that
can be rebuilt from the database: the outbox holds ``send_at``, beat runs a sweep.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

app = Celery("carnet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
