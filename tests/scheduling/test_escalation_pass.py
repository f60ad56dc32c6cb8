"""The escalation pass's read: every overdue open item and its ladder step (OP-04 ladder dates).

``selectors.overdue_steps`` takes the step from the rules' dates stored on the item, so after a
re-plan it must agree with the level the rules wrote; items the nightly pass has not moved yet
(still scheduled, reminder or window open, past due) are found too.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import time_machine

from patients import services as booklet
from scheduling import selectors
from scheduling.models import ItemStatus, PlanItem
from scheduling.tasks import plan_refresh_statuses
from tests.factories import PatientFactory

from .conftest import at

pytestmark = pytest.mark.django_db
OP = "denosumab_op_60mg_q6m"
LADDER = {"L1": "2026-07-16", "L2": "2026-08-06", "L3": "2026-08-13", "L4": "2026-11-05"}


def make_item(patient: Any, key: str, **fields: Any) -> PlanItem:
    values: dict[str, Any] = {
        "kind": "injection",
        "protocol": OP,
        "product": "denosumab",
        "rule": "OP-01",
        "due": date(2026, 7, 15),
        "status": ItemStatus.OVERDUE_L1,
        "escalation": LADDER,
    }
    values.update(fields)
    return PlanItem.objects.create(patient=patient, key=key, **values)


def steps_on(day: date) -> dict[int, tuple[int, str]]:
    return {item: (patient, step) for item, patient, step in selectors.overdue_steps(today=day)}


@pytest.mark.parametrize(
    ("day", "step"),
    [
        ("2026-07-15", None),  # due today: not overdue
        ("2026-07-16", "L1"),
        ("2026-08-05", "L1"),
        ("2026-08-06", "L2"),
        ("2026-08-12", "L2"),
        ("2026-08-13", "L3"),
        ("2026-11-04", "L3"),
        ("2026-11-05", "L4"),
        ("2027-03-01", "L4"),
    ],
)
def test_step_is_the_highest_level_whose_day_has_come_OP_04(team: Any, day: str, step: str | None) -> None:
    patient = PatientFactory(care_team=team)
    item = make_item(patient, "injection:2026-07-15")
    found = steps_on(date.fromisoformat(day))
    assert found.get(item.pk) == (None if step is None else (patient.pk, step))


def test_every_open_overdue_item_whatever_its_stored_status(team: Any) -> None:
    first, second = PatientFactory(care_team=team), PatientFactory(care_team=team)
    today = date(2026, 8, 10)
    expected = {
        # The nightly pass has not moved these yet: still an early status, past due.
        make_item(first, "a", status=ItemStatus.SCHEDULED).pk: (first.pk, "L2"),
        make_item(first, "b", status=ItemStatus.REMINDER).pk: (first.pk, "L2"),
        make_item(first, "c", status=ItemStatus.WINDOW_OPEN).pk: (first.pk, "L2"),
        make_item(second, "d", status=ItemStatus.BLOCKED).pk: (second.pk, "L2"),
        make_item(second, "e", status=ItemStatus.DUE, due=today - timedelta(days=1), escalation={}).pk: (
            second.pk,
            "due",
        ),
        # A ladder with only its first level (the vitamin D reminders).
        make_item(second, "f", protocol="vitamin_d_50000iu", escalation={"L1": "2026-07-16"}).pk: (second.pk, "L1"),
    }
    for status in (ItemStatus.DONE, ItemStatus.MISSED, ItemStatus.CANCELLED):
        make_item(first, f"closed-{status}", status=status)
    make_item(first, "future", status=ItemStatus.SCHEDULED, due=today + timedelta(days=30))
    make_item(second, "today", status=ItemStatus.DUE, due=today)
    assert steps_on(today) == expected


def test_steps_agree_with_the_levels_the_rules_wrote(make_patient: Any, nurse: Any, give: Any, calcium: Any) -> None:
    with time_machine.travel(at("2026-01-15", 11), tick=False):
        patient = make_patient()
        calcium(patient, "2026-01-08")
        course = booklet.course_start(patient=patient, protocol=OP, start_date=date(2026, 1, 15), by=nurse)
        give(patient, course, "2026-01-15")
    seen = set()
    for day in ("2026-07-16", "2026-08-06", "2026-08-13", "2026-11-05"):
        with time_machine.travel(at(day, 1), tick=False):
            plan_refresh_statuses()
        found = steps_on(date.fromisoformat(day))
        overdue = PlanItem.objects.filter(patient=patient, due__lt=day).exclude(
            status__in=(ItemStatus.DONE, ItemStatus.MISSED, ItemStatus.CANCELLED)
        )
        assert overdue, day
        for item in overdue:
            assert found[item.pk] == (patient.pk, item.level or "due"), (day, item.key)
            seen.add(item.level)
    assert {"L1", "L2", "L3", "L4"} <= seen


def test_nightly_selector_takes_any_of_reminder_window_or_due(team: Any) -> None:
    day = date(2026, 8, 10)
    later = day + timedelta(days=40)
    by_reminder, by_window, by_due, by_nothing_yet, closed_only = (PatientFactory(care_team=team) for _ in range(5))
    make_item(by_reminder, "r", status=ItemStatus.SCHEDULED, due=later, reminder_on=day, window_start=later)
    make_item(by_window, "w", status=ItemStatus.SCHEDULED, due=later, window_start=day)  # no reminder
    make_item(by_due, "d", status=ItemStatus.OVERDUE_L2, due=day - timedelta(days=30))  # neither
    make_item(by_nothing_yet, "n", status=ItemStatus.SCHEDULED, due=later, reminder_on=day + timedelta(days=1))
    for status in (ItemStatus.DONE, ItemStatus.MISSED, ItemStatus.CANCELLED):
        make_item(closed_only, f"c-{status}", status=status, due=day - timedelta(days=30))
    found = list(selectors.patients_with_open_items(due_on_or_before=day))
    assert found == sorted([by_reminder.pk, by_window.pk, by_due.pk])
    assert by_nothing_yet.pk in selectors.patients_with_open_items(due_on_or_before=day + timedelta(days=1))


def test_the_pass_leaves_the_callers_jit_setting_alone(team: Any) -> None:
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("JIT is a PostgreSQL setting")
    make_item(PatientFactory(care_team=team), "a")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = on")
        assert len(steps_on(date(2026, 8, 10))) == 1
        cursor.execute("SELECT current_setting('jit')")
        assert cursor.fetchone()[0] == "on"
