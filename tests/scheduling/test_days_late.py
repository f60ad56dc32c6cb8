"""Days late are derived where they are read (``days_late_on``, ``DaysLate``), not stored.

The rules give an item's days late from its status and due date on the patient's local today
(``ladder_status``); readers count them the same way in Python (``PlanItem.days_late``, the
plan's rows), in SQL on each row's own patient's date (the worklist's order and filter), and the
plan endpoint on the date its ETag names.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from patients.demo import StoryBuilder, stories_insert
from patients.models import Patient
from scheduling import selectors, services
from scheduling.expressions import DaysLate
from scheduling.models import LATE_STATUSES, ItemStatus, PlanItem
from scheduling.rules.items import LATE, days_late_on
from scheduling.worklist import REBOUND_DAYS_LATE, rebound_risk_count, worklist_items
from tests.factories import CareTeamFactory, PatientFactory

pytestmark = pytest.mark.django_db

# Zones a day apart at the same instant: UTC-11, UTC-5/-4, UTC+1/+2, UTC+14.
ZONES = ("Pacific/Pago_Pago", "America/New_York", "Europe/Paris", "Pacific/Kiritimati")


def test_the_late_statuses_are_the_models() -> None:
    assert set(LATE) == {str(status) for status in LATE_STATUSES}


@pytest.mark.parametrize(
    ("status", "due", "today", "late"),
    [
        ("overdue_L2", date(2026, 7, 1), date(2026, 7, 20), 19),
        ("due", date(2026, 7, 20), date(2026, 7, 20), 0),
        ("due", date(2026, 7, 18), date(2026, 7, 20), 2),  # before the ladder's first rung
        ("blocked", date(2026, 7, 25), date(2026, 7, 20), 0),  # blocked in its window
        ("blocked", date(2026, 7, 10), date(2026, 7, 20), 10),
        ("window_open", date(2026, 7, 10), date(2026, 7, 20), 0),  # a status not re-planned yet
        ("done", date(2026, 7, 1), date(2026, 7, 20), 0),
        ("overdue_L1", date(2026, 7, 25), date(2026, 7, 20), 0),  # a later date re-planned, read earlier
    ],
)
def test_days_late_on(status: str, due: date, today: date, late: int) -> None:
    assert days_late_on(status, due, today) == late


def test_the_rules_give_what_the_readers_derive_on_every_kind_of_story() -> None:
    """150 demo stories (every protocol, years of doses, labs and dental events) planned today
    and 45, 200 and 800 days on: every item's days late is ``days_late_on`` its status and due."""
    team = CareTeamFactory(timezone="Europe/Paris")
    builder = StoryBuilder(team=team, nurse=None, physician=None, seed=11)
    with transaction.atomic():
        ids = stories_insert([builder.build() for _ in range(150)])
    patients = list(Patient.objects.filter(pk__in=ids))
    config = selectors.rules_config()
    late = 0
    for shift in (0, 45, 200, 800):
        today = timezone.localdate() + timedelta(days=shift)
        inputs = selectors.plan_inputs(patients, today_by_patient=dict.fromkeys(ids, today))
        for patient in patients:
            for item in services.engine.compute_plan(inputs[patient.pk], today=today, config=config).items:
                assert item.days_late == days_late_on(item.status, item.due, today), (patient.pk, item)
                late += item.days_late > 0
    assert late > 100  # the stories have late items of every ladder


def _items_across_zones(instant: datetime) -> list[PlanItem]:
    """Items of patients in ``ZONES``, of every status, due on the same dates around ``instant``'s
    (so that one patient's date makes them a day later than another's)."""
    items = []
    statuses = [*LATE_STATUSES, ItemStatus.SCHEDULED, ItemStatus.WINDOW_OPEN, ItemStatus.DONE]
    base = instant.astimezone(UTC).date()
    for zone in ZONES:
        patient = PatientFactory(timezone=zone)
        for n, status in enumerate(statuses):
            for offset in (-40, -29, -2, -1, 0, 1):
                items.append(
                    PlanItem.objects.create(
                        patient=patient,
                        key=f"injection:{n}:{offset}",
                        kind="injection",
                        protocol="denosumab_op_60mg_q6m",
                        rule="OP-01",
                        due=base + timedelta(days=offset),
                        status=status,
                    )
                )
    return items


@pytest.mark.parametrize("hour", [0, 11, 23])
def test_the_sql_expression_counts_on_each_rows_patients_date(hour: int) -> None:
    """``DaysLate`` in a query gives what ``days_late_on`` gives on each row's patient's local
    date, for patients up to 25 hours apart (SQLite here, PostgreSQL in the integration run)."""
    instant = datetime(2026, 7, 20, hour, 30, tzinfo=UTC)
    items = _items_across_zones(instant)
    read = dict(
        PlanItem.objects.filter(pk__in=[i.pk for i in items]).annotate(late=DaysLate(instant)).values_list("pk", "late")
    )
    for item in items:
        today = timezone.localtime(instant, item.patient.tz).date()
        assert read[item.pk] == days_late_on(str(item.status), item.due, today), (item.patient.timezone, item.key)
    # The same due dates read a day apart from one zone to another.
    assert len(set(read.values())) > 6, sorted(set(read.values()))


def test_an_item_reads_its_days_late_on_its_patients_date() -> None:
    instant = datetime(2026, 7, 20, 23, 30, tzinfo=UTC)  # already the 21st in Paris, the 20th in New York
    with time_machine.travel(instant, tick=False):
        items = _items_across_zones(instant)
        for item in PlanItem.objects.filter(pk__in=[i.pk for i in items]).select_related("patient"):
            today = timezone.localtime(instant, item.patient.tz).date()
            assert item.days_late == days_late_on(item.status, item.due, today)
        annotated = (
            PlanItem.objects.annotate(days_late_now=DaysLate(instant - timedelta(days=3)))
            .select_related("patient")
            .get(pk=items[0].pk)
        )
        assert annotated.days_late == max(0, days_late_on(items[0].status, items[0].due, date(2026, 7, 17)))


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        DaysLate(datetime(2026, 7, 20, 12))


def test_the_worklist_ranks_and_counts_by_the_days_late_of_the_day(nurse: Any, team: Any) -> None:
    """The worklist's order and the rebound count follow the calendar with no re-plan: an item
    29 days late on its patient's date is at rebound risk (OP-04 L3), one a day short is not
    until the next day."""
    instant = datetime(2026, 7, 20, 10, tzinfo=UTC)
    paris = PatientFactory(care_team=team, timezone="Europe/Paris")
    tokyo = PatientFactory(care_team=team, timezone="Asia/Tokyo")
    kinds: dict[str, Any] = {"kind": "injection", "protocol": "denosumab_op_60mg_q6m", "rule": "OP-01"}
    a = PlanItem.objects.create(patient=paris, key="a", due=date(2026, 6, 22), status="overdue_L3", **kinds)
    b = PlanItem.objects.create(patient=tokyo, key="b", due=date(2026, 6, 22), status="overdue_L2", **kinds)
    c = PlanItem.objects.create(patient=paris, key="c", due=date(2026, 7, 15), status="overdue_L1", **kinds)
    ranked = list(worklist_items(team_ids=[team.pk], now=instant))
    assert [(i.key, i.days_late) for i in ranked] == [("a", 28), ("b", 28), ("c", 5)]
    assert rebound_risk_count(team_ids=[team.pk], now=instant) == 0
    later = instant + timedelta(hours=5)  # 15:00 in Paris, already the 21st in Tokyo
    assert [(i.key, i.days_late, i.rebound_risk) for i in worklist_items(team_ids=[team.pk], now=later)] == [
        ("b", REBOUND_DAYS_LATE, 1),
        ("a", 28, 0),
        ("c", 5, 0),
    ]
    assert rebound_risk_count(team_ids=[team.pk], now=later) == 1
    assert {a.pk, b.pk, c.pk} == {i.pk for i in ranked}
