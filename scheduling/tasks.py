"""Celery tasks of the plan: thin, idempotent, re-reading the database.

The nightly pass (beat, ``plan_refresh_statuses``) selects the patients whose plan can move
today and hands them to the workers in chunks of ``PLAN_REFRESH_CHUNK`` (``plan_refresh_patients``),
so that every worker process re-plans at once and no task runs for long: at a million patients
the pass re-plans ~900,000 of them, half an hour of one core. Each chunk is an idempotent
re-plan: a chunk run twice (redelivered after a lost worker, acks_late) writes nothing the
second time, and a chunk lost with the broker is re-planned by the next night's pass or by the
patient's next fact change.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.conf import settings

from scheduling import services


def _chunk_size() -> int:
    return max(1, int(settings.PLAN_REFRESH_CHUNK))


@shared_task(bind=True, name="scheduling.tasks.plan_refresh_statuses", acks_late=True)
def plan_refresh_statuses(self: Task[..., int]) -> int:
    """Nightly (beat): move statuses with the calendar — due, overdue L1…L4 — on every worker.

    One chunk or less is re-planned here; more go out as ``plan_refresh_patients`` tasks on one
    broker connection. Returns the number of patients selected.
    """
    ids = services.patients_due_refresh()
    if len(ids) <= _chunk_size():
        services.plans_rebuild(patient_ids=ids)
        return len(ids)
    with self.app.producer_or_acquire() as producer:
        return hand_out(ids, producer)


def hand_out(ids: list[int], producer: Any) -> int:
    """Publish ``ids`` as ``plan_refresh_patients`` tasks of one chunk each, on ``producer``."""
    size = _chunk_size()
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        plan_refresh_patients.apply_async(  # type: ignore[call-arg]  # argsrepr: a Celery option the stubs lack
            (chunk,), producer=producer, argsrepr=f"(<{len(chunk)} patients from {chunk[0]}>,)"
        )
    return len(ids)


@shared_task(name="scheduling.tasks.plan_refresh_patients", acks_late=True, ignore_result=True)
def plan_refresh_patients(patient_ids: list[int]) -> int:
    """Re-plan one chunk of the nightly pass (the rules run on the worker's today)."""
    return services.plans_rebuild(patient_ids=patient_ids)
