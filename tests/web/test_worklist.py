"""The overdue worklist: ranking, escalations and who was told, acknowledge, outcomes, blocks."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from scheduling.models import Escalation, PlanItem
from tests.web.scenario import Clinic
from web.models import WorklistOutcome

pytestmark = pytest.mark.django_db


def overdue(patient: Any) -> PlanItem:
    return PlanItem.objects.get(
        patient=patient,
        kind="injection",
        closed_at__isnull=True,
        status__in=("overdue_L1", "overdue_L2", "overdue_L3", "overdue_L4", "blocked"),
    )


def test_ranked_by_rebound_risk_then_days_late_with_levels_and_who_was_told(
    clinic: Clinic, nurse_client: Client
) -> None:
    response = nurse_client.get("/worklist/")
    rows = response.context["rows"]
    # OP-04: 40 days late (L3, past 7 months) first, then 7 days late (L1), then the blocked one.
    assert [r["patient"] for r in rows] == [clinic.late, clinic.slightly_late, clinic.blocked]
    assert rows[0]["rebound"] and rows[0]["item"].level == "L3"
    assert not rows[1]["rebound"]
    assert [x["e"].level for x in rows[0]["escalations"]] == ["L1", "L2", "L3"]
    # L1 went to the nurses by email (the outbox rows); L2 names its audience.
    told = rows[0]["escalations"][0]["told"]
    assert {t["who"] for t in told} == {"Claire Moreau", "Paul Girard"}
    assert rows[0]["escalations"][1]["notify"] == ["médecin"]
    page = response.content.decode()
    assert "Risque de rebond" in page and "Qui a été prévenu" in page


def test_blocked_items_show_the_reason_and_what_unblocks_them(clinic: Clinic, nurse_client: Client) -> None:
    row = next(r for r in nurse_client.get("/worklist/").context["rows"] if r["patient"] == clinic.blocked)
    (block,) = row["blocks"]
    assert block.code == "CALCIUM_CHECK_REQUIRED" and block.rule == "CA-05"
    assert "30 jours" in block.unblock
    assert escape(block.unblock) in nurse_client.get("/worklist/").content.decode()


def test_acknowledge_records_who_and_when(clinic: Clinic, nurse_client: Client) -> None:
    escalation = Escalation.objects.get(plan_item=overdue(clinic.late), level="L3")
    response = nurse_client.post(f"/escalations/{escalation.public_id}/acknowledge/")
    assert response.status_code == 302
    escalation.refresh_from_db()
    assert escalation.acknowledged_by == clinic.nurse and escalation.acknowledged_at is not None
    assert escalation.history.first().history_user == clinic.nurse  # type: ignore[attr-defined]
    assert nurse_client.get(f"/escalations/{escalation.public_id}/acknowledge/").status_code == 405


@pytest.mark.parametrize(
    ("outcome", "goes_to"),
    [("called", "/worklist/"), ("rescheduled", "/calendar/book/"), ("given", "/doses/new/?item=")],
)
def test_one_click_outcomes_are_audited(clinic: Clinic, nurse_client: Client, outcome: str, goes_to: str) -> None:
    item = overdue(clinic.late)
    response = nurse_client.post(f"/worklist/{item.public_id}/outcome/", {"outcome": outcome})
    assert response.status_code == 302 and goes_to in response["Location"]
    row = WorklistOutcome.objects.get(plan_item=item)
    assert row.outcome == outcome and row.recorded_by == clinic.nurse and row.patient == clinic.late
    history = row.history.get()  # type: ignore[attr-defined]
    assert history.history_type == "+" and history.history_user == clinic.nurse
    page = nurse_client.get("/worklist/").content.decode()
    assert "Dernières suites" in page


def test_an_unknown_outcome_stores_nothing(clinic: Clinic, nurse_client: Client) -> None:
    item = overdue(clinic.late)
    response = nurse_client.post(f"/worklist/{item.public_id}/outcome/", {"outcome": "forgotten"})
    assert response.status_code == 302
    assert not WorklistOutcome.objects.exists()
    assert nurse_client.get(f"/worklist/{item.public_id}/outcome/").status_code == 405


def test_worklist_query_count_does_not_grow_with_the_list(
    clinic: Clinic, nurse_client: Client, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(20):
        assert nurse_client.get("/worklist/").status_code == 200
