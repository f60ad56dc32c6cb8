"""Beat task: forget idempotency keys past their lifetime."""

from __future__ import annotations

from celery import shared_task

from idempotency.services import idempotency_records_purge


@shared_task(name="idempotency.tasks.idempotency_purge", acks_late=True)
def idempotency_purge() -> int:
    return idempotency_records_purge()
