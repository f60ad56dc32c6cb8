"""The nightly pass spreads its patients over the workers: chunks published to Redis, each an
idempotent re-plan (scheduling.tasks)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import time_machine
from django.test import override_settings

from patients import services as booklet
from scheduling import tasks
from scheduling.models import PlanItem

from .conftest import at

pytestmark = pytest.mark.django_db

OP = "denosumab_op_60mg_q6m"


def _patients(make_patient: Any, nurse: Any, give: Any, calcium: Any, count: int) -> list[Any]:
    patients = []
    with time_machine.travel(at("2026-01-15", 11), tick=False):
        for _ in range(count):
            patient = make_patient()
            calcium(patient, "2026-01-08")
            course = booklet.course_start(patient=patient, protocol=OP, start_date=date(2026, 1, 15), by=nurse)
            give(patient, course, "2026-01-15")
            patients.append(patient)
    return patients


def _next_injection(patient: Any) -> PlanItem:
    return PlanItem.objects.filter(patient=patient, kind="injection", closed_at__isnull=True).order_by("due")[0]


@pytest.mark.redis
@override_settings(PLAN_REFRESH_CHUNK=2)
def test_the_nightly_pass_hands_its_patients_out_in_chunks_each_a_re_plan(
    task_queue: tuple[Any, Any], make_patient: Any, nurse: Any, give: Any, calcium: Any
) -> None:
    producer, waiting = task_queue
    patients = _patients(make_patient, nurse, give, calcium, 5)
    with time_machine.travel(at("2026-07-16", 1), tick=False):
        ids = tasks.services.patients_due_refresh()
        assert sorted(ids) == sorted(p.pk for p in patients)  # each injection is overdue today
        assert tasks.hand_out(ids, producer) == 5
        chunks = []
        while (message := waiting.get(no_ack=True)) is not None:
            assert message.headers["task"] == "scheduling.tasks.plan_refresh_patients"
            assert "patients from" in message.headers["argsrepr"]  # not five ids in the headers
            args, _kwargs, _embed = message.decode()
            chunks.append(args[0])
        assert [len(c) for c in chunks] == [2, 2, 1] and sorted(i for c in chunks for i in c) == sorted(ids)
        assert {_next_injection(p).status for p in patients} == {"scheduled"}  # nothing moved since January
        for chunk in chunks:  # as the workers run them
            assert tasks.plan_refresh_patients(chunk) == len(chunk)
        assert {_next_injection(p).status for p in patients} == {"overdue_L1"}
        # A chunk run twice (redelivered after a lost worker) writes nothing the second time.
        versions = {i.pk: (i.version, i.updated_at) for i in PlanItem.objects.filter(patient__in=patients)}
        tasks.plan_refresh_patients(chunks[0])
        assert {i.pk: (i.version, i.updated_at) for i in PlanItem.objects.filter(patient__in=patients)} == versions


def test_one_chunk_or_less_is_re_planned_in_the_beat_task(
    make_patient: Any, nurse: Any, give: Any, calcium: Any
) -> None:
    patients = _patients(make_patient, nurse, give, calcium, 2)
    with time_machine.travel(at("2026-07-16", 1), tick=False):
        assert tasks.plan_refresh_statuses() == 2
    assert {_next_injection(p).status for p in patients} == {"overdue_L1"}
