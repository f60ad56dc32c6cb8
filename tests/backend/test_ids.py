"""``backend.ids.uuid7``: RFC 9562 version 7 ids, ordered by creation time, and what uses them."""

from __future__ import annotations

import time
import uuid
from datetime import date

import pytest
import time_machine
from django.utils import timezone

from backend.ids import uuid7
from scheduling.models import Escalation, PlanItem
from tests.factories import PatientFactory


def test_version_variant_and_time() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid7()
    after = time.time_ns() // 1_000_000
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after  # the first 48 bits: Unix time in ms


def test_ids_sort_by_creation_time_and_do_not_repeat() -> None:
    made = []
    for second in range(5):
        with time_machine.travel(1_800_000_000 + second, tick=False):
            made.extend(uuid7() for _ in range(2000))
    assert len(set(made)) == len(made)
    # Across milliseconds, in creation order (within one, random order: the rest is random).
    by_ms = [u.int >> 80 for u in made]
    assert by_ms == sorted(by_ms) and len(set(by_ms)) == 5
    assert by_ms[0] == 1_800_000_000_000
    # 74 random bits: the ids of one millisecond differ in their random parts, not only at the end.
    assert len({(u.int >> 64) & 0xFFF for u in made[:2000]}) > 1000


@pytest.mark.django_db
def test_plan_items_and_escalations_get_them() -> None:
    patient = PatientFactory()
    item = PlanItem.objects.create(
        patient=patient, key="injection:1:1", kind="injection", rule="OP-01", due=date(2026, 7, 1), status="due"
    )
    escalation = Escalation.objects.create(
        plan_item=item,
        patient=patient,
        level="L1",
        rule="OP-04",
        severity="W",
        opened_on=date(2026, 7, 2),
        opened_at=timezone.now(),
    )
    assert item.public_id.version == 7 and escalation.public_id.version == 7
