"""Celery tasks of the plan: thin, idempotent, re-reading the database."""

from __future__ import annotations

from celery import shared_task

from scheduling import services


@shared_task(name="scheduling.tasks.plan_refresh_statuses", acks_late=True)
def plan_refresh_statuses() -> int:
    """Nightly (beat): move statuses with the calendar — due, overdue L1…L4 — in batches."""
    return services.plans_refresh_due()
