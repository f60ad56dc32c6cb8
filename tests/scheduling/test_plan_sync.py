"""The stored plan follows the facts, in the same transaction, and rewrites nothing needlessly."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backend.errors import CarnetError
from patients import services as booklet
from patients.models import DoseRecord
from scheduling import selectors, services
from scheduling.models import Escalation, PlanItem, PlanState
from scheduling.rules.items import days_late_on

from .conftest import at

pytestmark = pytest.mark.django_db

OP = "denosumab_op_60mg_q6m"


def _injections(patient: Any) -> list[PlanItem]:
    return list(PlanItem.objects.filter(patient=patient, kind="injection").order_by("due"))


def _writes(ctx: CaptureQueriesContext) -> list[str]:
    """The statements captured by ``ctx`` that write (INSERT, UPDATE, DELETE)."""
    return [q["sql"] for q in ctx.captured_queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]


def _open_injection(patient: Any) -> PlanItem:
    """The next injection: the plan projects 24 months ahead, so take the earliest open one."""
    return PlanItem.objects.filter(patient=patient, kind="injection", closed_at__isnull=True).order_by("due")[0]


@pytest.fixture
def op_patient(make_patient: Any, nurse: Any, give: Any, calcium: Any) -> tuple[Any, Any]:
    with time_machine.travel(at("2026-01-15", 11), tick=False):
        patient = make_patient()
        calcium(patient, "2026-01-08")
        course = booklet.course_start(patient=patient, protocol=OP, start_date=date(2026, 1, 15), by=nurse)
        give(patient, course, "2026-01-15")
    return patient, course


def test_dose_recorded_rewrites_plan_in_same_transaction_OP_01(op_patient: tuple[Any, Any]) -> None:
    patient, _course = op_patient
    item = _open_injection(patient)
    # OP-01: D = add_months(last injection, 6); OP-02 reminder D-28; OP-03 window ±21 d.
    assert item.due == date(2026, 7, 15)
    assert item.reminder_on == date(2026, 6, 17)
    assert (item.window_start, item.window_end) == (date(2026, 6, 24), date(2026, 8, 5))
    assert item.rule == "OP-01"
    assert item.course_id == _course.pk
    assert item.escalation == {"L1": "2026-07-16", "L2": "2026-08-06", "L3": "2026-08-13", "L4": "2026-11-05"}


def test_replanning_unchanged_facts_writes_nothing(op_patient: tuple[Any, Any]) -> None:
    patient, _ = op_patient
    before = {r.key: (r.version, r.updated_at) for r in PlanItem.objects.filter(patient=patient)}
    with time_machine.travel(at("2026-01-15", 18), tick=False), CaptureQueriesContext(connection) as ctx:
        result = services.plan_sync(patient=patient)
    assert not result.changed
    writes = _writes(ctx)
    assert writes == []
    after = {r.key: (r.version, r.updated_at) for r in PlanItem.objects.filter(patient=patient)}
    assert after == before


def test_version_changes_only_when_dates_change(op_patient: tuple[Any, Any], give: Any, nurse: Any) -> None:
    patient, course = op_patient
    item = _open_injection(patient)
    assert item.version == 1
    dose = DoseRecord.objects.get(patient=patient)
    with time_machine.travel(at("2026-01-21", 9), tick=False):
        booklet.dose_void(dose=dose, reason="Wrong date entered", by=nurse)
        give(patient, course, "2026-01-20")
    moved = PlanItem.objects.get(pk=item.pk)
    assert moved.key == item.key
    assert moved.due == date(2026, 7, 20)
    assert moved.version == 2
    # A status-only change (the calendar moving) keeps the version.
    with time_machine.travel(at("2026-06-25", 9), tick=False):  # reminder on D-28 = 06-22
        services.plan_sync(patient=patient)
    same = PlanItem.objects.get(pk=item.pk)
    assert same.status == "reminder"
    assert same.version == 2


def test_next_dose_marks_item_done_and_reanchors(op_patient: tuple[Any, Any], give: Any, calcium: Any) -> None:
    patient, course = op_patient
    first = _open_injection(patient)
    with time_machine.travel(at("2026-08-01", 9), tick=False):
        calcium(patient, "2026-07-28")
        give(patient, course, "2026-08-01")  # 17 days late: re-anchors (OP-01), no catch-up
    first.refresh_from_db()
    assert first.status == "done"
    nxt = _open_injection(patient)
    assert nxt.due == date(2027, 2, 1)
    assert nxt.ordinal == first.ordinal + 1


def test_lab_added_blocks_next_injection_CA_03(op_patient: tuple[Any, Any], calcium: Any) -> None:
    patient, _ = op_patient
    with time_machine.travel(at("2026-07-01", 9), tick=False):
        calcium(patient, "2026-07-01", value="2.05", albumin="40")
    item = _open_injection(patient)
    assert "HYPOCALCAEMIA_BLOCK" in item.blocked_by


def test_course_stop_schedules_consolidation_OP_08_CONS_01(op_patient: tuple[Any, Any], nurse: Any) -> None:
    patient, course = op_patient
    with time_machine.travel(at("2026-03-01", 9), tick=False):
        booklet.course_stop(course=course, stop_date=date(2026, 3, 1), reason="Patient choice", by=nurse)
    assert not PlanItem.objects.filter(patient=patient, kind="injection", closed_at__isnull=True).exists()
    cons = PlanItem.objects.filter(patient=patient, kind="consolidation", closed_at__isnull=True).order_by("due")[0]
    assert cons.due == date(2026, 7, 15)  # add_months(last denosumab, 6)
    assert cons.product
    assert PlanItem.objects.get(pk=_injections(patient)[-1].pk).status == "cancelled"


def test_birth_date_change_adds_post_injection_calcium_CA_POST_01(op_patient: tuple[Any, Any], nurse: Any) -> None:
    patient, _ = op_patient
    with time_machine.travel(at("2026-01-16", 9), tick=False):
        booklet.lab_add(
            patient=patient, test="egfr", value=Decimal("85"), unit="mL/min/1.73m2", drawn_at=at("2026-01-10"), by=nurse
        )
    live = PlanItem.objects.filter(patient=patient, kind="calcium_check", due=date(2026, 1, 30), closed_at__isnull=True)
    # With a known eGFR ≥ 60 and age < 75, CA-POST-01 does not apply: the check is cancelled.
    assert not live.exists()
    with time_machine.travel(at("2026-01-16", 10), tick=False):
        booklet.patient_update(patient=patient, birth_date=date(1945, 3, 2), by=nurse)
    # Age ≥ 75 on the injection date → calcium at injection + 15 d.
    assert live.exists()


def test_dental_event_replans(op_patient: tuple[Any, Any], nurse: Any) -> None:
    patient, _ = op_patient
    with time_machine.travel(at("2026-02-01", 9), tick=False):
        booklet.dental_event_add(patient=patient, event="exam", on=date(2026, 2, 1), by=nurse)
    visit = PlanItem.objects.filter(patient=patient, kind="dental_visit", closed_at__isnull=True).order_by("due")[0]
    assert visit.due == date(2026, 8, 1)  # DENT-03: add_months(last visit, 6)


def test_query_count_is_constant_whatever_the_history(make_patient: Any, nurse: Any, give: Any, calcium: Any) -> None:
    counts = []
    for years in (1, 6):
        with time_machine.travel(at("2016-01-04", 9), tick=False):
            patient = make_patient(first_name=f"P{years}")
            course = booklet.course_start(patient=patient, protocol=OP, start_date=date(2016, 1, 4), by=nurse)
        day = date(2016, 1, 4)
        for _ in range(years * 2):
            with time_machine.travel(at(day.isoformat(), 9), tick=False):
                calcium(patient, day.isoformat())
                give(patient, course, day.isoformat())
            day = date(day.year + (day.month + 6 > 12), (day.month + 5) % 12 + 1, day.day)
        with time_machine.travel(at("2026-11-21", 9), tick=False), CaptureQueriesContext(connection) as ctx:
            services.plan_sync(patient=patient)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]


def test_escalation_ladder_opens_each_level_once_and_dose_resolves_it_OP_04(
    op_patient: tuple[Any, Any], nurse: Any, give: Any, calcium: Any
) -> None:
    patient, course = op_patient
    with time_machine.travel(at("2026-08-07", 9), tick=False):  # D+23: L2
        services.plans_refresh_due()
        services.plans_refresh_due()  # a second pass opens nothing new
    item = _open_injection(patient)
    assert item.status == "overdue_L2"
    levels = sorted(Escalation.objects.filter(plan_item=item).values_list("level", flat=True))
    assert levels == ["L1", "L2"]
    l2 = Escalation.objects.get(plan_item=item, level="L2")
    assert "physician" in l2.notify
    services.escalation_acknowledge(escalation=l2, by=nurse)
    l2.refresh_from_db()
    assert l2.acknowledged_by == nurse and l2.resolved_at is None
    with time_machine.travel(at("2026-08-10", 9), tick=False):
        calcium(patient, "2026-08-09")
        give(patient, course, "2026-08-10")
    assert not Escalation.objects.filter(plan_item=item, resolved_at__isnull=True).exists()
    assert set(Escalation.objects.filter(plan_item=item).values_list("resolution", flat=True)) == {"given"}


def test_hard_block_refuses_dose_and_changes_nothing_CA_03(
    op_patient: tuple[Any, Any], give: Any, calcium: Any
) -> None:
    patient, course = op_patient
    with time_machine.travel(at("2026-07-10", 9), tick=False):
        calcium(patient, "2026-07-09", value="2.00", albumin="40")
        plan_before = list(PlanItem.objects.filter(patient=patient).values())
        with pytest.raises(CarnetError) as err:
            give(patient, course, "2026-07-10", override_reason="emergency")
    assert "HYPOCALCAEMIA_BLOCK" in err.value.message
    assert DoseRecord.objects.filter(patient=patient).count() == 1
    assert list(PlanItem.objects.filter(patient=patient).values()) == plan_before


def test_overridable_block_needs_reason_and_is_audited_VITD_04(
    make_patient: Any, nurse: Any, give: Any, calcium: Any
) -> None:
    with time_machine.travel(at("2026-03-02", 9), tick=False):
        patient = make_patient()
        calcium(patient, "2026-03-01")
        booklet.lab_add(
            patient=patient,
            test="25ohd",
            value=Decimal("30"),
            unit="nmol/L",  # 12 ng/mL
            drawn_at=at("2026-03-01"),
            by=nurse,
        )
        course = booklet.course_start(patient=patient, protocol=OP, start_date=date(2026, 3, 2), by=nurse)
        with pytest.raises(CarnetError) as err:
            give(patient, course, "2026-03-02")
        assert err.value.field == "override_reason"
        assert DoseRecord.objects.filter(patient=patient).count() == 0
        dose = give(patient, course, "2026-03-02", override_reason="Fracture risk too high to wait")
    assert "VITD_GATE_BLOCK" in dose.override_flags
    record = dose.history.latest()
    assert record.history_user == nurse
    assert record.override_reason == "Fracture risk too high to wait"


def test_nightly_pass_moves_statuses(op_patient: tuple[Any, Any]) -> None:
    patient, _ = op_patient
    from scheduling.tasks import plan_refresh_statuses

    # The only calcium is from 2026-01-08: from the window on, CA-05 blocks the injection; once
    # it is overdue the ladder level shows instead and the block stays listed.
    expected = {
        "2026-06-10": ("scheduled", []),
        "2026-06-17": ("reminder", []),
        "2026-06-24": ("blocked", ["CALCIUM_CHECK_REQUIRED"]),
        "2026-07-15": ("blocked", ["CALCIUM_CHECK_REQUIRED"]),
        "2026-07-16": ("overdue_L1", ["CALCIUM_CHECK_REQUIRED"]),
        "2026-08-13": ("overdue_L3", ["CALCIUM_CHECK_REQUIRED"]),
    }
    for day, (status, blocked_by) in expected.items():
        with time_machine.travel(at(day, 1), tick=False):
            plan_refresh_statuses()
        item = _open_injection(patient)
        assert (item.status, item.blocked_by) == (status, blocked_by), day


def _queries(fn: Any) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def _fact_change_query_counts(
    make_patient: Any, nurse: Any, give: Any, calcium: Any, history_doses: int
) -> dict[str, int]:
    with time_machine.travel(at("2020-01-06", 9), tick=False):
        patient = make_patient(first_name=f"H{history_doses}")
        course = booklet.course_start(patient=patient, protocol=OP, start_date=date(2020, 1, 6), by=nurse)
    day = date(2020, 1, 6)
    for _ in range(history_doses):
        with time_machine.travel(at(day.isoformat(), 9), tick=False):
            calcium(patient, day.isoformat())
            give(patient, course, day.isoformat())
        day = date(day.year + (day.month + 6 > 12), (day.month + 5) % 12 + 1, day.day)
    counts: dict[str, int] = {}
    with time_machine.travel(at("2026-11-20", 12), tick=False):
        counts["lab"] = _queries(lambda: calcium(patient, "2026-11-20"))
        counts["dental"] = _queries(
            lambda: booklet.dental_event_add(patient=patient, event="exam", on=date(2026, 11, 20), by=nurse)
        )
        counts["birth_date"] = _queries(
            lambda: booklet.patient_update(patient=patient, birth_date=date(1949, 1, 1), by=nurse)
        )
        counts["dose"] = _queries(lambda: give(patient, course, "2026-11-20"))
        dose = DoseRecord.objects.filter(patient=patient).latest("given_at")
        counts["void"] = _queries(lambda: booklet.dose_void(dose=dose, reason="entered twice", by=nurse))
        counts["stop"] = _queries(
            lambda: booklet.course_stop(course=course, stop_date=date(2026, 11, 20), reason="end", by=nurse)
        )
    assert PlanItem.objects.filter(patient=patient, kind="consolidation", closed_at__isnull=True).exists()
    return counts


def test_each_fact_change_rewrites_the_plan_in_bounded_queries(
    make_patient: Any, nurse: Any, give: Any, calcium: Any
) -> None:
    """Every kind of fact change re-plans, with a query count that does not grow with history."""
    short = _fact_change_query_counts(make_patient, nurse, give, calcium, history_doses=1)
    long = _fact_change_query_counts(make_patient, nurse, give, calcium, history_doses=8)
    # A fixed budget: the fact write and its history row, six fact reads, the plan's narrow read
    # and the whole rows that changed, bulk writes, escalations, the plan state and the outbox;
    # never a query per dose or per item.
    assert max(long.values()) <= 50, long
    assert long == short


def test_voiding_the_dose_reopens_the_same_done_item(
    op_patient: tuple[Any, Any], give: Any, calcium: Any, nurse: Any
) -> None:
    """A done item is not re-read on every re-plan, but a void brings the very same row back."""
    patient, course = op_patient
    item = _open_injection(patient)
    with time_machine.travel(at("2026-07-15", 9), tick=False):
        calcium(patient, "2026-07-14")
        dose = give(patient, course, "2026-07-15")
    item.refresh_from_db()
    assert item.status == "done" and item.closed_at is not None
    with time_machine.travel(at("2026-07-16", 9), tick=False):
        booklet.dose_void(dose=dose, reason="Entered on the wrong patient", by=nurse)
    item.refresh_from_db()
    assert item.closed_at is None
    assert item.status == "overdue_L1"
    assert _open_injection(patient).pk == item.pk


def _item_reads(patient: Any) -> list[str]:
    """The statements on plan items of a re-plan of ``patient`` with unchanged facts."""
    with time_machine.travel(at("2026-01-15", 18), tick=False), CaptureQueriesContext(connection) as ctx:
        services.plan_sync(patient=patient)
    return [q["sql"] for q in ctx.captured_queries if 'FROM "scheduling_planitem"' in q["sql"]]


def test_an_unchanged_plan_is_recognised_by_its_digest_without_reading_its_items(
    op_patient: tuple[Any, Any],
) -> None:
    """The rules give the plan the last sync stored: no item is read to diff it (only the
    outbox's own read of the open items, as a fact service re-syncs the outbox)."""
    patient, _ = op_patient
    state = PlanState.objects.get(patient=patient)
    with time_machine.travel(at("2026-01-15", 18), tick=False):
        expected = services.plan_digest(services.plan_compute(patient), selectors.rules_config())
    assert state.digest == expected
    reads = _item_reads(patient)
    assert not any('"scheduling_planitem"."fingerprint"' in sql for sql in reads), reads
    assert len(reads) == 1 and '"scheduling_planitem"."status" IN' in reads[0], reads


def test_unchanged_items_are_recognised_by_fingerprint_without_loading_them(op_patient: tuple[Any, Any]) -> None:
    """A plan without a matching digest is diffed item by item: the re-plan reads (id, key,
    fingerprint, status, level); whole rows only when they differ."""
    patient, _ = op_patient
    stored = {r.key: r.fingerprint for r in PlanItem.objects.filter(patient=patient, closed_at__isnull=True)}
    assert stored and all(isinstance(f, int) for f in stored.values())
    PlanState.objects.filter(patient=patient).update(digest=None)
    plan_reads = _item_reads(patient)
    # The narrow read (and the outbox's own read of open items): no row is loaded whole.
    assert any('"scheduling_planitem"."fingerprint"' in sql for sql in plan_reads), plan_reads
    assert not any('"scheduling_planitem"."blocked_by"' in sql for sql in plan_reads), plan_reads
    assert PlanState.objects.get(patient=patient).digest is not None  # and the digest is back


def test_a_row_without_fingerprint_gets_one_without_a_new_version(op_patient: tuple[Any, Any]) -> None:
    """Rows written before the fingerprint (and the plan digest) existed are compared whole once,
    then fingerprinted."""
    patient, _ = op_patient
    PlanItem.objects.filter(patient=patient).update(fingerprint=None)
    PlanState.objects.filter(patient=patient).update(digest=None)
    revision = PlanState.objects.get(patient=patient).revision
    before = {r.key: (r.version, r.status) for r in PlanItem.objects.filter(patient=patient)}
    with time_machine.travel(at("2026-01-15", 18), tick=False):
        result = services.plan_sync(patient=patient)
    assert not result.changed
    rows = list(PlanItem.objects.filter(patient=patient, closed_at__isnull=True))
    assert all(r.fingerprint is not None for r in rows)
    assert {r.key: (r.version, r.status) for r in PlanItem.objects.filter(patient=patient)} == before
    assert PlanState.objects.get(patient=patient).revision == revision  # nothing shown changed


def test_a_new_day_or_policy_gives_a_new_digest_and_an_item_diff(op_patient: tuple[Any, Any]) -> None:
    """The digest covers every field the rules give (a status, days late) and the policy: a
    changed plan or ladder is diffed and stored, never skipped."""
    from scheduling.rules.config import RulesConfig

    patient, _ = op_patient
    config = selectors.rules_config()
    with time_machine.travel(at("2026-01-15", 18), tick=False):
        plan = services.plan_compute(patient)
    with time_machine.travel(at("2026-07-20", 18), tick=False):
        late = services.plan_compute(patient)
    stricter = RulesConfig.from_mapping({"op_escalation_days": [1, 15, 29, 113]})
    assert len({services.plan_digest(plan, config), services.plan_digest(late, config)}) == 2
    assert services.plan_digest(plan, stricter) != services.plan_digest(plan, config)
    with time_machine.travel(at("2026-07-20", 18), tick=False):
        result = services.plan_sync(patient=patient)
    assert result.updated and _open_injection(patient).status == "overdue_L1"
    assert PlanState.objects.get(patient=patient).digest == services.plan_digest(late, config)


def _days_late_as_read(patient: Any, plan: Any) -> None:
    """Every open row, read on the patient's local today, has the days late the rules give."""
    read = {
        i.key: i.days_late for i in PlanItem.objects.filter(patient=patient, closed_at=None).select_related("patient")
    }
    assert read == {i.key: i.days_late for i in plan.items}


def test_a_day_that_only_moves_days_late_writes_nothing(op_patient: tuple[Any, Any]) -> None:
    """Between two rungs of a ladder only an overdue item's days late move, and they are not
    stored: the re-plan writes nothing (same digest, same rows, same revision), and the item
    reads a day later, as the rules give it (the plan's ETag changes with the date)."""
    patient, _ = op_patient
    with time_machine.travel(at("2026-07-20", 18), tick=False):
        services.plan_sync(patient=patient)
        item = _open_injection(patient)
        assert (item.status, item.days_late) == ("overdue_L1", 5)
    before = PlanState.objects.get(patient=patient)
    with time_machine.travel(at("2026-07-21", 18), tick=False):
        with CaptureQueriesContext(connection) as ctx:
            result = services.plan_sync(patient=patient)
        plan = services.plan_compute(patient)
        moved = _open_injection(patient)
        assert (moved.status, moved.days_late, moved.version, moved.fingerprint) == (
            "overdue_L1",
            6,
            item.version,
            item.fingerprint,
        )
        _days_late_as_read(patient, plan)
    assert not result.changed
    assert _writes(ctx) == []
    after = PlanState.objects.get(patient=patient)
    assert (after.revision, after.digest) == (before.revision, before.digest)


def test_days_late_follow_a_time_zone_change(op_patient: tuple[Any, Any], nurse: Any) -> None:
    """A patient who moves west of Paris just after midnight is back on the previous local date:
    the days late go back one day, as the rules give them on that date."""
    patient, _ = op_patient
    late_evening_utc = at("2026-07-21", 0).replace(minute=30)  # 00:30 in Paris, 18:30 in New York
    with time_machine.travel(late_evening_utc, tick=False):
        services.plan_sync(patient=patient)
        assert _open_injection(patient).days_late == 6
        booklet.patient_update(patient=patient, timezone="America/New_York", by=nurse)
        patient.refresh_from_db()
        plan = services.plan_compute(patient)
        assert _open_injection(patient).days_late == 5
        _days_late_as_read(patient, plan)


def test_days_late_follow_the_patients_local_date_when_time_goes_back(op_patient: tuple[Any, Any]) -> None:
    """A re-plan for an earlier instant (a replayed pass) stores that date's statuses, and the
    days late read on it are that date's."""
    patient, _ = op_patient
    with time_machine.travel(at("2026-07-25", 18), tick=False):
        services.plan_sync(patient=patient)
    with time_machine.travel(at("2026-07-19", 18), tick=False):
        services.plan_sync(patient=patient)
        plan = services.plan_compute(patient)
        _days_late_as_read(patient, plan)
        assert _open_injection(patient).days_late == 4


def test_plan_digest_is_the_same_in_every_process() -> None:
    """Stored digests are compared by other processes (the nightly pass, workers): the digest
    must not depend on the process's string hashing (PYTHONHASHSEED)."""
    import os
    import subprocess
    import sys

    script = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'backend.settings'); django.setup()\n"
        "from datetime import date\n"
        "from scheduling import selectors, services\n"
        "from scheduling.rules.engine import compute_plan\n"
        "from tests.scheduling.test_rules_support import OP, VITD, calcium, course, doses, facts, lab, patient\n"
        "f = facts(pt=patient(birth_date=date(1940, 3, 1), egfr_ml_min=28.0),"
        " courses=(course(), course(VITD, '2025-11-01', key='c2')), dose_list=doses(OP, '2025-01-15', '2025-07-10'),"
        " labs=(*calcium('2026-01-02', value=1.9), lab('25ohd', 12.0, 'ng/mL', '2025-10-20')))\n"
        "config = selectors.rules_config()\n"
        "print(services.plan_digest(compute_plan(f, today=date(2026, 3, 20), config=config), config))\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1 and digests.pop().lstrip("-").isdigit()


def test_bulk_replan_resyncs_the_outbox_only_of_changed_messages(op_patient: tuple[Any, Any], nurse: Any) -> None:
    """plans_rebuild leaves the outbox alone when no message can have changed (an unchanged plan,
    or only statuses moving); a fact service re-syncs it."""
    from notifications.models import OutboxMessage, OutboxState

    def outbox_reads(fn: Any) -> int:
        with CaptureQueriesContext(connection) as ctx:
            fn()
        return sum('"notifications_outboxmessage"' in q["sql"] for q in ctx.captured_queries)

    patient, _ = op_patient
    with time_machine.travel(at("2026-01-15", 18), tick=False):
        assert outbox_reads(lambda: services.plans_rebuild(patient_ids=[patient.pk])) == 0
        assert outbox_reads(lambda: services.plans_rebuild(patient_ids=[patient.pk], outbox="all")) > 0
        # Contact and consent are not plan facts: their service re-syncs the outbox itself.
        booklet.patient_update(patient=patient, email="jeanne@example.org", consent_email=True, by=nurse)
    pending = OutboxMessage.objects.filter(patient=patient, state=OutboxState.PENDING, channel="email")
    assert pending.exists()
    with time_machine.travel(at("2026-07-13", 18), tick=False):
        services.plans_rebuild(patient_ids=[patient.pk])
        late = {i.key: i.days_late for i in PlanItem.objects.filter(patient=patient, closed_at=None)}
    with time_machine.travel(at("2026-07-14", 18), tick=False):  # overdue checks: only their days late move
        assert outbox_reads(lambda: services.plans_rebuild(patient_ids=[patient.pk])) == 0
        assert {i.key: i.days_late for i in PlanItem.objects.filter(patient=patient, closed_at=None)} != late
    with time_machine.travel(at("2026-07-16", 18), tick=False):  # overdue: L1 opens and calls for messages
        assert outbox_reads(lambda: services.plans_rebuild(patient_ids=[patient.pk])) > 0
        assert Escalation.objects.filter(patient=patient, level="L1").exists()


def test_item_fingerprint_is_the_fingerprint_of_the_stored_values() -> None:
    """The re-plan recognises an unchanged item from the engine's item without building its row:
    that digest must be the one ``fingerprint`` gives the row's values (and so the stored one)."""
    from scheduling.services import _plan_fingerprints, _row_values, fingerprint

    from .test_rules_support import ONCO, OP, VITD, ZOL, calcium, course, doses, facts, lab, patient, plan

    plans = [
        # overdue injection on a ladder, low calcium (a block with date params), vitamin D loading
        plan(
            facts(
                pt=patient(birth_date=date(1940, 3, 1), egfr_ml_min=28.0),
                courses=(course(), course(VITD, "2025-11-01", key="c2")),
                dose_list=doses(OP, "2025-01-15", "2025-07-10"),
                labs=(*calcium("2026-01-02", value=1.9), lab("25ohd", 12.0, "ng/mL", "2025-10-20")),
            ),
            "2026-03-20",
        ),
        plan(
            facts(courses=(course(ONCO, "2024-05-02"),), dose_list=doses(ONCO, "2024-05-02", "2024-06-03")),
            "2025-02-01",
        ),
        plan(
            facts(courses=(course(ZOL, "2023-02-01", key="7"),), dose_list=doses(ZOL, "2023-02-01", course_key="7")),
            "2026-11-22",
        ),
    ]
    checked = 0
    for p in plans:
        for key, planned in _plan_fingerprints(p).items():
            values = _row_values(planned.item) | {"flags": planned.flags}
            assert planned.fingerprint == fingerprint(values), key
            checked += 1
    assert checked > 30
    kinds = {planned.item.status for p in plans for planned in _plan_fingerprints(p).values()}
    assert any(status.startswith("overdue_") for status in kinds)


def test_fact_reads_give_what_the_orm_gives(op_patient: tuple[Any, Any], nurse: Any, calcium: Any) -> None:
    """``plan_inputs`` reads the facts with hand-written SQL on PostgreSQL: every table gives the
    rows, columns, order and Python types of the ORM's read, voided rows left out."""
    from scheduling.selectors import _FACT_READS, _fact_rows, _orm_fact_rows

    patient, course = op_patient
    with time_machine.travel(at("2026-02-01", 9), tick=False):
        booklet.dose_record(
            patient=patient,
            product="cholecalciferol",
            dose_value=Decimal("50000"),
            dose_unit="IU",
            route="PO",
            given_at=at("2026-01-20", 8),
            by=nurse,
            source=DoseRecord.Source.HISTORY,
        )
        voided = calcium(patient, "2026-01-25", value="2.10", albumin=None)
        booklet.lab_void(lab=voided, reason="Wrong patient", by=nurse)
        booklet.lab_add(
            patient=patient,
            test="egfr",
            value=Decimal("48.5"),
            unit="mL/min/1.73m2",
            drawn_at=at("2026-01-26", 8),
            by=nurse,
            reference_low=Decimal("60"),
            reference_high=Decimal("120"),
        )
        booklet.dental_event_add(patient=patient, event="exam", on=date(2026, 1, 27), by=nurse)
        booklet.comedication_add(
            patient=patient,
            name="prednisone",
            drug_class="glucocorticoid",
            start_date=date(2026, 1, 2),
            mg_per_day=Decimal("7.5"),
            by=nurse,
        )
        booklet.course_stop(course=course, stop_date=date(2026, 1, 30), reason="Switch", by=nurse)
    ids = [patient.pk]
    for name in _FACT_READS:
        rows = _fact_rows(name, ids)
        assert rows, name
        assert rows == _orm_fact_rows(name, ids), name
        assert [[type(v) for v in row] for row in rows] == [[type(v) for v in row] for row in _orm_fact_rows(name, ids)]
    facts = selectors.plan_inputs([patient], today_by_patient={patient.pk: date(2026, 2, 1)})[patient.pk]
    assert [(d.protocol, d.course_key) for d in facts.doses] == [
        ("denosumab_op_60mg_q6m", str(course.pk)),
        ("vitamin_d_50000iu", None),
    ]
    assert facts.courses[0].stop is not None and facts.courses[0].stop.consolidation == "zoledronic_op_5mg"
    assert [lab.test for lab in facts.labs] == ["calcium_total", "albumin", "egfr"]  # the voided one left out
    assert facts.patient.egfr_ml_min == 48.5 and (facts.labs[-1].ref_low, facts.labs[-1].ref_high) == (60.0, 120.0)
    assert facts.comedications[0].mg_per_day == 7.5 and facts.dental[0].event == "exam"


def test_nightly_passes_leave_the_outbox_as_a_full_sync_would() -> None:
    """The bulk pass re-syncs the outbox only of the patients whose messages may have changed
    (``SyncResult.outbox_patient_ids``): after every day of re-planning, a full outbox sync of every
    patient finds nothing to create, cancel or re-time, although most days' status-only changes
    were not re-synced."""
    from datetime import timedelta

    from django.core.management import call_command
    from django.db.models import CharField, F, Value
    from django.db.models.functions import Cast, Concat

    from notifications.models import Device, OutboxMessage
    from notifications.services import outbox_sync
    from patients.models import Patient

    start = at("2026-03-02", 2)  # the nightly pass's hour
    with time_machine.travel(start, tick=False):
        call_command(
            "demo_data", "--patients", "24", "--seed", "5", "--team", "Nuit", stdout=StringIO(), stderr=StringIO()
        )
        team_patients = Patient.objects.filter(care_team__name="Nuit")
        team_patients.update(
            email=Concat(Value("p"), Cast(F("pk"), CharField()), Value("@example.org")), consent_email=True
        )
        ids = sorted(team_patients.values_list("pk", flat=True))
        for pk in ids[::4]:
            Device.objects.create(
                patient_id=pk, channel="webpush", endpoint=f"https://push.test/{pk}", p256dh="k", auth="a"
            )
        services.plans_rebuild(patient_ids=ids, outbox="all")
    rows_before = OutboxMessage.objects.count()
    # Facts written behind the services' back (a bulk import) reach the plan with the next pass:
    # doses given on day 10, voided on day 25, so items close, reopen and move.
    given = [
        DoseRecord.objects.filter(patient_id=pk, voided_at=None, product="denosumab").latest("given_on")
        for pk in ids
        if DoseRecord.objects.filter(patient_id=pk, voided_at=None, product="denosumab").exists()
    ][:4]
    assert len(given) == 4
    plan_changes = outbox_resyncs = 0
    for day in range(1, 50):
        moment = start + timedelta(days=day)
        with time_machine.travel(moment, tick=False):
            if day == 10:
                for dose in given:
                    dose.pk, dose.public_id, dose.given_at, dose.given_on = None, uuid.uuid4(), moment, moment.date()
                    dose.save()
            if day == 25:
                DoseRecord.objects.filter(pk__in=[dose.pk for dose in given]).update(voided_at=moment)
            patients = list(Patient.objects.filter(pk__in=ids).order_by("pk"))
            result = services.plans_sync_batch(patients, now=moment, outbox="changed")
            changed = {row.patient_id for row in (*result.created, *result.updated, *result.closed)}
            plan_changes += len(changed)
            outbox_resyncs += len(result.outbox_patient_ids())
            check = outbox_sync(patients=patients, now=moment)
            assert (check.created, check.cancelled, check.retimed) == (0, 0, 0), moment
            # And every open row holds the rules' values of the day, and reads their days late.
            today = {p.pk: p.local_date(moment) for p in patients}
            stored = {
                (pk, key, status, days_late_on(status, due, today[pk]), fingerprint)
                for pk, key, status, due, fingerprint in PlanItem.objects.filter(
                    patient_id__in=ids, closed_at=None
                ).values_list("patient_id", "key", "status", "due", "fingerprint")
            }
            planned = {
                (p.pk, key, item.status, item.days_late, fingerprint)
                for p in patients
                for key, (item, _flags, fingerprint) in services._plan_fingerprints(services.plan_compute(p)).items()
            }
            assert stored == planned, moment
    # The pass did change plans, and re-synced the outbox of some of them only (a status moving
    # alone calls for no message: 107 of 167 plan changes here).
    assert 0 < outbox_resyncs < plan_changes, (outbox_resyncs, plan_changes)
    assert OutboxMessage.objects.count() > rows_before


def test_bulk_replan_resyncs_the_outbox_of_closed_reopened_and_moved_items(op_patient: tuple[Any, Any]) -> None:
    """Facts written behind the services' back (a bulk import, a fix in the database) reach the
    plan with the next bulk pass: an item closed, reopened or moved changes its messages, so that
    pass re-syncs the patient's outbox (``SyncResult.outbox_patient_ids``) even with nothing created."""
    from notifications.models import OutboxMessage, OutboxState
    from notifications.services import outbox_sync
    from patients.models import LabResult, Patient

    patient, course = op_patient
    Patient.objects.filter(pk=patient.pk).update(email="jeanne@example.org", consent_email=True)

    def bulk_pass(moment: Any) -> services.SyncResult:
        with time_machine.travel(moment, tick=False):
            result = services.plans_sync_batch([Patient.objects.get(pk=patient.pk)], outbox="changed")
            check = outbox_sync(patients=[Patient.objects.get(pk=patient.pk)])
            assert (check.created, check.cancelled, check.retimed) == (0, 0, 0)
            return result

    with time_machine.travel(at("2026-01-16", 18), tick=False):
        outbox_sync(patients=[Patient.objects.get(pk=patient.pk)])
    bulk_pass(at("2026-07-13", 18))
    post = PlanItem.objects.get(patient=patient, key=f"calcium_check:{course.pk}:1:post")
    assert OutboxMessage.objects.filter(plan_item=post, state=OutboxState.PENDING).exists()

    lab = LabResult.objects.filter(patient=patient).latest("drawn_on")
    lab.pk, lab.public_id, lab.drawn_at, lab.drawn_on = None, uuid.uuid4(), at("2026-07-14", 8), date(2026, 7, 14)
    lab.save()
    closed = bulk_pass(at("2026-07-14", 18))
    assert post.key in {row.key for row in closed.closed} and not (closed.created or closed.moved)
    assert not OutboxMessage.objects.filter(plan_item=post, state=OutboxState.PENDING).exists()

    LabResult.objects.filter(pk=lab.pk).update(voided_at=at("2026-07-14", 19))
    reopened = bulk_pass(at("2026-07-14", 20))
    assert post.key in {row.key for row in reopened.reopened} and not (reopened.created or reopened.moved)

    DoseRecord.objects.filter(patient=patient).update(given_at=at("2026-01-20", 8), given_on=date(2026, 1, 20))
    moved = bulk_pass(at("2026-07-14", 21))
    assert f"injection:{course.pk}:2" in {row.key for row in moved.moved} and not (moved.created or moved.closed)


def test_a_voided_dose_gives_the_item_back_its_appointment(
    op_patient: tuple[Any, Any], nurse: Any, give: Any, calcium: Any
) -> None:
    """Recording the dose marks the injection's booked appointment done; voiding the dose (a
    mistake) books it again, one SEQUENCE up for calendars, audited."""
    from scheduling.appointments import appointment_book
    from scheduling.models import Appointment

    patient, course = op_patient
    with time_machine.travel(at("2026-07-10", 9), tick=False):
        calcium(patient, "2026-07-09")
        item = _open_injection(patient)
        slot = appointment_book(plan_item=item, starts_at=at("2026-07-13", 14), nurse=nurse, by=nurse)
        mistake = give(patient, course, "2026-07-10")
        slot.refresh_from_db()
        assert (slot.status, slot.sequence) == (Appointment.Status.DONE, 0)
        booklet.dose_void(dose=mistake, reason="entered on the wrong patient", by=nurse)
    slot.refresh_from_db()
    assert (slot.status, slot.sequence, slot.cancelled_at) == (Appointment.Status.BOOKED, 1, None)
    assert slot.history.first().history_change_reason == "plan item reopened"  # type: ignore[attr-defined]


def _due_today(op_patient: tuple[Any, Any], calcium: Any) -> tuple[Any, Any]:
    """``op_patient`` on 2026-07-15, its second injection due that day (calcium drawn on the 10th)."""
    patient, course = op_patient
    with time_machine.travel(at("2026-07-15", 11), tick=False):
        calcium(patient, "2026-07-10")
        assert _open_injection(patient).due == date(2026, 7, 15)
    return patient, course


def _alongside_a_held_batch(patient: Any, monkeypatch: pytest.MonkeyPatch, work: Any) -> bool:
    """Run ``work`` in a thread of its own while a bulk re-plan of ``patient`` (another thread,
    ``plans_rebuild``) is held just after reading the facts; both run to their commit. True if
    ``work`` was still waiting 1.5 s after it started, that is behind the batch."""
    import threading

    read, go = threading.Event(), threading.Event()
    real = selectors.plan_inputs

    def pausing(patients: Any, **kwargs: Any) -> Any:
        facts = real(patients, **kwargs)
        if threading.current_thread().name == "nightly":  # the batch has its facts: hold it there
            read.set()
            go.wait(10)
        return facts

    monkeypatch.setattr(selectors, "plan_inputs", pausing)
    errors: list[BaseException] = []

    def run(job: Any) -> None:
        try:
            job()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    nightly = threading.Thread(
        target=run, args=(lambda: services.plans_rebuild(patient_ids=[patient.pk]),), name="nightly"
    )
    nightly.start()
    assert read.wait(10)
    other = threading.Thread(target=run, args=(work,), name="other")
    other.start()
    other.join(1.5)
    waited = other.is_alive()
    go.set()
    nightly.join(20)
    other.join(20)
    assert not errors
    return waited


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_a_bulk_replan_and_a_fact_service_take_turns_on_a_patient(
    op_patient: tuple[Any, Any], give: Any, calcium: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nightly pass has read a patient's facts when a nurse records the due injection: the
    nurse's re-plan waits for the pass's batch to commit, then plans from the dose, so the
    pass's plan (made without it) never lands over the nurse's. Without the patient lock
    (``patients.locks``) the nurse's transaction commits first and the batch reopens the
    injection just given."""
    patient, course = _due_today(op_patient, calcium)
    with time_machine.travel(at("2026-07-15", 11), tick=False):
        assert _alongside_a_held_batch(patient, monkeypatch, lambda: give(patient, course, "2026-07-15"))
        # The stored plan is the one the facts give now: the injection given, the next one in January.
        assert _open_injection(patient).due == date(2027, 1, 15)
        state = PlanState.objects.get(patient=patient)
        assert state.digest == services.plan_digest(services.plan_compute(patient), selectors.rules_config())


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_an_outbox_sync_waits_for_a_bulk_replan_of_its_patient(
    op_patient: tuple[Any, Any], calcium: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A preference change re-syncs the patient's outbox from the open items: it waits for a
    re-plan that is rewriting them, and the outbox it leaves is the one the plan calls for."""
    from datetime import time

    from notifications import services as notifications

    patient, _course = _due_today(op_patient, calcium)
    with time_machine.travel(at("2026-07-15", 11), tick=False):
        assert _alongside_a_held_batch(
            patient, monkeypatch, lambda: notifications.preference_set(patient=patient, time_of_day=time(18, 0))
        )
        again = notifications.outbox_sync(patients=[patient])
    assert (again.created, again.cancelled, again.retimed) == (0, 0, 0)
