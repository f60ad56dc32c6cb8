"""List endpoints cost the same number of queries for 2 rows as for 20."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.api.conftest import World, days_ago


def add_patients(world: World, count: int) -> None:
    from patients import services
    from patients.models import Patient
    from scheduling.appointments import appointment_book
    from scheduling.models import PlanItem

    nurse = world.users["nurse1"]
    first = Patient.objects.count()
    for i in range(first, first + count):
        patient = services.patient_create(
            care_team=world.team1, by=nurse, first_name=f"P{i}", last_name=f"N{i}", birth_date=date(1950, 1, 1), sex="F"
        )
        course = services.course_start(
            patient=patient,
            protocol="denosumab_op_60mg_q6m",
            start_date=timezone.localdate() - timedelta(days=230),
            by=nurse,
        )
        services.dose_record(
            patient=patient,
            course=course,
            product="denosumab",
            dose_value=Decimal(60),
            dose_unit="mg",
            route="SC",
            given_at=days_ago(230),
            by=nurse,
            given_by=nurse,
            injection_site="abdomen",
            lot_number="L",
            source="history",
        )
        item = PlanItem.objects.filter(patient=patient, kind="injection", status__startswith="overdue").first()
        if item is not None:
            appointment_book(
                plan_item=item, starts_at=days_ago(-3 - i, 9), nurse=nurse, by=nurse, out_of_window_reason="late"
            )


def queries(world: World, role: str, url: str) -> tuple[int, int]:
    client = world.client(role)
    client.get(url)  # warm caches (content types, …)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    rows = body["count"] if isinstance(body, dict) and "count" in body else len(body)
    return len(ctx.captured_queries), rows


LISTS = ["/api/v1/patients", "/api/v1/worklist", "/api/v1/escalations", "/api/v1/appointments"]


@pytest.mark.parametrize("url", LISTS)
def test_list_query_count_does_not_grow_with_rows(world: World, url: str) -> None:
    add_patients(world, 1)
    small, small_rows = queries(world, "nurse1", url)
    add_patients(world, 18)
    large, large_rows = queries(world, "nurse1", url)
    assert large_rows >= small_rows + 10, (small_rows, large_rows)
    assert large == small, f"{url}: {small} queries for {small_rows} rows, {large} for {large_rows}"


def test_booklet_and_plan_do_not_grow_with_history(world: World, django_assert_num_queries: Any) -> None:
    from patients import services
    from patients.api import BOOKLETS

    url_booklet = "/api/v1/me/booklet"
    client = world.client("patient_a")
    client.get(url_booklet)
    BOOKLETS.clear()  # both renders, not a body kept by its revision
    with CaptureQueriesContext(connection) as small:
        client.get(url_booklet)
    for i in range(15):
        services.lab_add(
            patient=world.patient_a,
            test="calcium_total",
            value=Decimal("2.3"),
            unit="mmol/L",
            drawn_at=days_ago(10 + i),
            by=world.users["nurse1"],
        )
    BOOKLETS.clear()
    with CaptureQueriesContext(connection) as large:
        client.get(url_booklet)
    assert len(large.captured_queries) == len(small.captured_queries)
