"""The patient's polled reads: the plan served from the stored plan (no rules run), the booklet
rendered from plain rows, both with an ETag and 304 — and the same JSON as the serializers gave."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.renderers import JSONRenderer

from tests.api.conftest import World, day_ago, days_ago


def _by_id(rows: Any) -> dict[str, dict[str, Any]]:
    return {row["id"]: dict(row) for row in rows}


def test_booklet_is_what_the_model_serializers_render(world: World) -> None:
    from patients import services
    from patients.models import Comedication, DentalEvent, DoseRecord, LabResult, TreatmentCourse
    from patients.serializers import (
        ComedicationSerializer,
        CourseSerializer,
        DentalEventSerializer,
        DoseSerializer,
        LabSerializer,
        booklet_data,
    )

    nurse = world.users["nurse1"]
    services.lab_void(lab=world.lab_a, reason="haemolysed sample", by=nurse)  # voided_at, void_reason
    services.comedication_add(  # no mg_per_day
        patient=world.patient_a, name="methotrexate", drug_class="immunosuppressant", start_date=day_ago(50), by=nurse
    )
    services.course_start(patient=world.patient_a, protocol="vitamin_d_50000iu", start_date=day_ago(3), by=nurse)
    response = world.client("patient_a").get("/api/v1/me/booklet")
    body = response.json()
    patient = world.patient_a
    expected = {
        "courses": CourseSerializer(TreatmentCourse.objects.filter(patient=patient), many=True).data,
        "doses": DoseSerializer(DoseRecord.objects.filter(patient=patient), many=True).data,
        "labs": LabSerializer(LabResult.objects.filter(patient=patient), many=True).data,
        "dental_events": DentalEventSerializer(DentalEvent.objects.filter(patient=patient), many=True).data,
        "comedications": ComedicationSerializer(Comedication.objects.filter(patient=patient), many=True).data,
    }
    assert set(body) == set(expected)
    for name, rows in expected.items():
        assert len(body[name]) == len(rows) > 0, name
        assert _by_id(body[name]) == _by_id(rows), name
        assert list(body[name][0]) == list(rows[0]), name  # same keys, same order
    assert body == booklet_data(patient)
    # The very bytes DRF's renderer writes (PostgreSQL writes them compact too: no "id" : …).
    assert response.content == JSONRenderer().render(booklet_data(patient))
    assert any(lab["voided"] and lab["void_reason"] == "haemolysed sample" for lab in body["labs"])
    assert {c["active"] for c in body["courses"]} == {True}


def test_a_dose_of_another_patients_course_names_that_course_as_drf_does(world: World) -> None:
    """The booklet joins a dose to the patient's own courses; a course of someone else (nothing in
    the database forbids it) is still named, as the serializer names it."""
    from patients.models import DoseRecord
    from patients.serializers import booklet_data

    dose = DoseRecord.objects.filter(patient=world.patient_a).order_by("pk").first()
    assert dose is not None
    DoseRecord.objects.filter(pk=dose.pk).update(course=world.course_b)
    response = world.client("patient_a").get("/api/v1/me/booklet")
    by_id = {d["id"]: d for d in response.json()["doses"]}
    assert by_id[str(dose.public_id)]["course"] == str(world.course_b.public_id)
    assert response.content == JSONRenderer().render(booklet_data(world.patient_a))
    DoseRecord.objects.filter(pk=dose.pk).update(course=None)
    response = world.client("patient_a").get("/api/v1/me/booklet")
    assert {d["id"]: d for d in response.json()["doses"]}[str(dose.public_id)]["course"] is None
    assert response.content == JSONRenderer().render(booklet_data(world.patient_a))


def test_plan_items_are_what_the_plan_serializer_renders(world: World) -> None:
    from scheduling.models import OPEN_STATUSES, PlanItem
    from scheduling.serializers import PlanItemSerializer

    items = PlanItem.objects.filter(patient=world.patient_a, closed_at__isnull=True, status__in=OPEN_STATUSES)
    items = items.select_related("course").order_by("due", "kind", "pk")
    for lang in ("en", "fr"):
        response = world.client("patient_a").get("/api/v1/me/plan", HTTP_ACCEPT_LANGUAGE=lang)
        body = response.json()
        expected = PlanItemSerializer(items, many=True, context={"lang": lang}).data
        assert body["items"] == [dict(item) for item in expected]
        assert b'" : ' not in response.content  # compact, as DRF writes it
        assert len(body["items"]) >= 2 and any(i["blocks"] or i["flags"] for i in body["items"])


def test_plan_flags_come_from_the_stored_state_as_the_rules_give_them(world: World, monkeypatch: Any) -> None:
    from scheduling import services as plan_services
    from scheduling.models import PlanState
    from scheduling.plan_state import flag_out

    plan = plan_services.plan_compute(world.patient_a)
    expected = [flag_out(plan_services.flag_json(f), "en") for f in plan.flags if f.subject is None]
    assert expected, "patient A's prednisone gives patient-level flags (RISK-01/02)"

    def no_rules(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the plan endpoint ran the rules")

    monkeypatch.setattr(plan_services, "plan_compute", no_rules)
    client = world.client("patient_a")
    assert client.get("/api/v1/me/plan").json()["flags"] == expected
    # A patient not re-planned since plan states exist: the rules once more, same answer.
    PlanState.objects.filter(patient=world.patient_a).delete()
    monkeypatch.undo()
    fallback = client.get("/api/v1/me/plan")
    assert fallback.json()["flags"] == expected
    assert client.get("/api/v1/me/plan", HTTP_IF_NONE_MATCH=fallback["ETag"]).status_code == 304  # body hash


def test_plan_etag_gives_304_until_the_plan_changes(world: World) -> None:
    from patients import services

    client = world.client("patient_a")
    first = client.get("/api/v1/me/plan")
    etag = first["ETag"]
    assert first.status_code == 200 and etag and first["Cache-Control"] == "private, no-cache"
    with CaptureQueriesContext(connection) as queries:
        again = client.get("/api/v1/me/plan", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    plan_queries = [q["sql"] for q in queries.captured_queries if "scheduling_planitem" in q["sql"]]
    assert plan_queries == [], "a 304 reads the plan state, not the items"
    # Another language is another representation.
    assert client.get("/api/v1/me/plan", HTTP_ACCEPT_LANGUAGE="fr", HTTP_IF_NONE_MATCH=etag).status_code == 200
    # A recorded dose re-plans: the plan changes, so does the ETag.
    services.dose_record(
        patient=world.patient_a,
        course=world.course_a,
        product="denosumab",
        dose_value=Decimal(60),
        dose_unit="mg",
        route="SC",
        given_at=days_ago(1),
        by=world.users["nurse1"],
        given_by=world.users["nurse1"],
        injection_site="abdomen",
        lot_number="L2",
        source="staff",
    )
    changed = client.get("/api/v1/me/plan", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert str(world.item_a.public_id) not in {i["id"] for i in changed.json()["items"]}


def test_the_next_day_the_same_revision_reads_a_day_later(world: World) -> None:
    """Days late are not stored: with no re-plan between two days, the plan keeps its revision,
    and the next day's ETag names a body whose late items are a day later (the same day's 304
    still holds)."""
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from scheduling.models import PlanState

    client = world.client("patient_a")
    revision = PlanState.objects.get(patient=world.patient_a).revision
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        first = client.get("/api/v1/me/plan")
    with time_machine.travel(now + timedelta(days=1), tick=False):
        assert client.get("/api/v1/me/plan", HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200
        second = client.get("/api/v1/me/plan")
    assert PlanState.objects.get(patient=world.patient_a).revision == revision
    assert revision.hex in first["ETag"] and revision.hex in second["ETag"] and first["ETag"] != second["ETag"]
    before, after = _by_id(first.json()["items"]), _by_id(second.json()["items"])
    item = str(world.item_a.public_id)
    assert before[item]["days_late"] > 0 and after[item]["days_late"] == before[item]["days_late"] + 1
    # Nothing else moved: the statuses are those of the last re-plan, the items the same.
    for rows in (before, after):
        for row in rows.values():
            row.pop("days_late")
    assert before == after


def test_a_plan_to_render_reads_its_state_and_items_in_one_statement(world: World) -> None:
    """After the auth query (which read the revision), a plan 200 not kept is one more statement
    on PostgreSQL: the state and the items together (elsewhere the two reads), the ETag from it."""
    from django.utils import timezone

    from scheduling.api import PLANS
    from scheduling.models import PlanItem
    from tests.api.test_auth import bearer, login

    client = bearer(login("patient.a@example.org").json()["access"])  # the token's path (backend.polled)
    first = client.get("/api/v1/me/plan")
    PLANS.clear()
    with CaptureQueriesContext(connection) as queries:
        again = client.get("/api/v1/me/plan")
    assert again.status_code == 200 and again.content == first.content and again["ETag"] == first["ETag"]
    reads = [q["sql"] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert len(reads) == 2 and "carnet_plan_state_items" in reads[1], reads  # auth, then state and items
    else:
        assert len(reads) == 3, reads  # auth, the state, the items
    # No open item: the state read on its own (no row carries it), an empty list, the same flags.
    PlanItem.objects.filter(patient=world.patient_a).update(closed_at=timezone.now())
    PLANS.clear()
    empty = client.get("/api/v1/me/plan")
    assert empty.status_code == 200 and empty["ETag"] == first["ETag"]
    assert empty.json()["items"] == [] and empty.json()["flags"] == first.json()["flags"]


def test_replanning_unchanged_facts_keeps_the_plan_revision(world: World) -> None:
    from scheduling.models import PlanState
    from scheduling.services import plans_rebuild

    before = PlanState.objects.get(patient=world.patient_a).revision
    plans_rebuild(patient_ids=[world.patient_a.pk, world.patient_b.pk])
    assert PlanState.objects.get(patient=world.patient_a).revision == before
    assert PlanState.objects.filter(patient=world.patient_b).exists()


def test_booklet_etag_gives_304_until_an_entry_is_added(world: World) -> None:
    from patients import services

    client = world.client("patient_a")
    first = client.get("/api/v1/me/booklet")
    etag = first["ETag"]
    assert first.status_code == 200 and etag.endswith('"')
    assert client.get("/api/v1/me/booklet", HTTP_IF_NONE_MATCH=f'"nope", {etag}').status_code == 304
    assert client.get("/api/v1/me/booklet", HTTP_IF_NONE_MATCH="*").status_code == 304
    services.dental_event_add(patient=world.patient_a, event="exam", on=day_ago(1), by=world.users["nurse1"])
    changed = client.get("/api/v1/me/booklet", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag


@pytest.mark.parametrize("url", ["/api/v1/me/plan", "/api/v1/me/booklet"])
def test_conditional_reads_stay_scoped(world: World, url: str) -> None:
    """Patient B's ETag is no key to patient A's data, and staff reach these only by patient id."""
    etag_a = world.client("patient_a").get(url)["ETag"]
    other = world.client("patient_b").get(url, HTTP_IF_NONE_MATCH=etag_a)
    assert other.status_code == 200 and other["ETag"] != etag_a
    assert world.client("nurse1").get(url).status_code == 403
    assert world.client("anonymous").get(url).status_code == 401


def test_staff_plan_and_booklet_have_etags_too(world: World) -> None:
    nurse = world.client("nurse1")
    for what in ("plan", "booklet"):
        url = f"/api/v1/patients/{world.patient_a.public_id}/{what}"
        first = nurse.get(url)
        assert first.status_code == 200, first.content
        assert nurse.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
        assert world.client("nurse2").get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 404


def test_prepared_statements_number_their_placeholders() -> None:
    from backend.prepared import Prepared

    statement = Prepared("carnet_test", "SELECT %s::int + %s::int", ("int", "int"))
    assert statement.prepare == "PREPARE carnet_test (int, int) AS SELECT $1::int + $2::int"
    assert statement.execute == "EXECUTE carnet_test (%s, %s)"
    with pytest.raises(ValueError):
        Prepared("carnet_test", "SELECT %s", ())
    with pytest.raises(ValueError):
        Prepared("bad name; DROP", "SELECT 1", ())


def test_reads_prepare_their_statements_again_in_a_new_session(world: World) -> None:
    """Prepared statements live in a session; a new one (a reconnect) starts without them."""
    from django.db import connection

    from backend import prepared

    client = world.client("patient_a")
    before = {url: client.get(url).content for url in ("/api/v1/me/plan", "/api/v1/me/booklet")}
    if connection.vendor == "postgresql":
        assert prepared._prepared.get(connection.connection), "the reads use prepared statements"
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")  # what a new session starts with
        prepared._prepared.clear()
    for url, body in before.items():
        again = client.get(url)
        assert again.status_code == 200 and again.content == body


@pytest.mark.postgres
def test_sessions_running_prepared_reads_run_without_jit(world: World) -> None:
    """The generic plans of the prepared reads can be costed past ``jit_above_cost``; JIT then
    compiles on every execution (tens of ms for a sub-millisecond statement)."""
    from backend import prepared

    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
        cursor.execute("SET jit = on")
    prepared._prepared.clear()  # a new session, as after a reconnect
    assert world.client("patient_a").get("/api/v1/me/booklet").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
