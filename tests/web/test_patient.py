"""The patient page and its actions: dose (record, void), lab, dental event, course start/stop with previews."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from patients.models import DentalEvent, DoseRecord, LabResult, TreatmentCourse
from scheduling.models import ItemStatus, PlanItem
from tests.web.scenario import Clinic, today

pytestmark = pytest.mark.django_db


def now_local() -> str:
    return timezone.localtime(timezone.now(), timezone=timezone.get_default_timezone()).strftime("%Y-%m-%dT%H:%M")


def dose_data(clinic: Clinic, **extra: Any) -> dict[str, Any]:
    data = {
        "course": clinic.late_course.pk,
        "product": "denosumab",
        "dose_value": "60",
        "lot_number": "LOT-77",
        "injection_site": "thigh_left",
        "given_at": now_local(),
        "override_reason": "",
    }
    data.update(extra)
    return data


def test_patient_page_draws_the_booklet_and_gives_adherence(clinic: Clinic, nurse_client: Client) -> None:
    response = nurse_client.get(f"/patients/{clinic.late.public_id}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<svg viewBox="0 0 1000' in page and "tl-window" in page and "tl-normal" in page
    dots = [sh for sh in response.context["timeline"].shapes if sh.kind == "circle" and "tl-dose" in sh.attrs["class"]]
    # The first dose has no window; doses 2 and 3 were inside their ±21-day window (OP-03).
    assert sorted(d.attrs["class"] for d in dots) == ["tl-dose", "tl-dose tl-ontime", "tl-dose tl-ontime"]
    assert "tl-planned tl-overdue" in page  # the overdue injection, drawn as its window
    adherence = response.context["adherence"]
    assert (adherence.inside, adherence.counted, adherence.percent) == (2, 2, 100)
    assert "Observance" in page and "100 %" in page


def test_patient_list_searches_the_current_team_only(clinic: Clinic, nurse_client: Client) -> None:
    page = nurse_client.get("/patients/?q=mart").content.decode()
    assert "MARTIN Jeanne" in page and "BERNARD" not in page
    assert "LEROY" not in nurse_client.get("/patients/?q=leroy").content.decode()


def test_record_a_dose_with_its_lot_closes_the_overdue_item(clinic: Clinic, nurse_client: Client) -> None:
    item = PlanItem.objects.get(patient=clinic.late, kind="injection", status="overdue_L3")
    form = nurse_client.get(f"/patients/{clinic.late.public_id}/doses/new/?item={item.public_id}")
    assert form.context["form"].initial["course"] == clinic.late_course
    response = nurse_client.post(f"/patients/{clinic.late.public_id}/doses/new/", dose_data(clinic))
    assert response.status_code == 302
    dose = DoseRecord.objects.get(patient=clinic.late, lot_number="LOT-77")
    assert (dose.dose_unit, dose.route, dose.injection_site) == ("mg", "SC", "thigh_left")
    assert dose.recorded_by == clinic.nurse and dose.given_by == clinic.nurse
    item.refresh_from_db()
    assert item.status == ItemStatus.DONE
    assert clinic.late not in [r["patient"] for r in nurse_client.get("/worklist/").context["rows"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lot_number": ""}, "lot_number"),
        ({"injection_site": ""}, "injection_site"),
        ({"dose_value": "120"}, "dose_value"),
        ({"given_at": "2099-01-01T10:00"}, "given_at"),
        ({"given_at": "hier"}, "given_at"),
        ({"product": "aspirin"}, "product"),
    ],
)
def test_a_bad_dose_names_the_field_and_stores_nothing(
    clinic: Clinic, nurse_client: Client, change: dict[str, str], field: str
) -> None:
    before = DoseRecord.objects.count()
    response = nurse_client.post(f"/patients/{clinic.late.public_id}/doses/new/", dose_data(clinic, **change))
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert "Rien n'a été enregistré" in response.content.decode()
    assert DoseRecord.objects.count() == before


def test_a_hard_block_refuses_the_dose_and_says_what_unblocks_it(clinic: Clinic, nurse_client: Client) -> None:
    course = clinic.blocked.courses.get()
    data = dose_data(clinic, course=course.pk, override_reason="Urgence")
    refused = nurse_client.post(f"/patients/{clinic.blocked.public_id}/doses/new/", data)
    errors = refused.context["form"].errors["__all__"]
    assert "CALCIUM_CHECK_REQUIRED" in errors[0] and "30 jours" in errors[0]  # CA-05: no override
    assert not DoseRecord.objects.filter(patient=clinic.blocked, lot_number="LOT-77").exists()


def test_an_overridable_block_asks_for_an_emergency_reason(clinic: Clinic, nurse_client: Client) -> None:
    from patients import services
    from tests.factories import DentalEventFactory, LabResultFactory, PatientFactory

    # A first denosumab dose five days after an extraction (DENT-02: wait 21 days, or override).
    patient = PatientFactory(care_team=clinic.team)
    LabResultFactory(patient=patient, days_ago=2)
    LabResultFactory(patient=patient, test="25ohd", value_entered=Decimal("40"), days_ago=2)
    DentalEventFactory(patient=patient, event="exam", days_ago=20)
    DentalEventFactory(patient=patient, event="panoramic_xray", days_ago=20)
    services.dental_event_add(patient=patient, event="extraction", on=today() - timedelta(days=5), by=clinic.nurse)
    course = services.course_start(
        patient=patient, protocol="denosumab_op_60mg_q6m", start_date=today(), by=clinic.nurse
    )
    url = f"/patients/{patient.public_id}/doses/new/"
    refused = nurse_client.post(url, dose_data(clinic, course=course.pk))
    assert "DENTAL_HEALING_WAIT" in refused.context["form"].errors["override_reason"][0]  # DENT-02
    assert not DoseRecord.objects.filter(lot_number="LOT-77").exists()
    accepted = nurse_client.post(url, dose_data(clinic, course=course.pk, override_reason="Départ à l'étranger"))
    assert accepted.status_code == 302
    dose = DoseRecord.objects.get(lot_number="LOT-77")
    assert set(dose.override_flags) == {"DENTAL_HEALING_WAIT", "DENTAL_CLEARANCE_REQUIRED"}


def test_void_a_dose_needs_a_reason(clinic: Clinic, nurse_client: Client) -> None:
    dose = clinic.late.doses.order_by("-given_on").first()
    assert dose is not None
    url = f"/patients/{clinic.late.public_id}/doses/{dose.public_id}/void/"
    assert nurse_client.get(url).status_code == 200
    refused = nurse_client.post(url, {"reason": ""})
    assert refused.status_code == 200 and "reason" in refused.context["form"].errors
    assert DoseRecord.objects.get(pk=dose.pk).voided_at is None
    assert nurse_client.post(url, {"reason": "Saisie en double"}).status_code == 302
    dose.refresh_from_db()
    assert dose.voided_at is not None and dose.voided_by == clinic.nurse and dose.void_reason == "Saisie en double"


def test_add_a_lab_result_and_bad_values_are_named(clinic: Clinic, nurse_client: Client) -> None:
    url = f"/patients/{clinic.late.public_id}/labs/new/"
    assert nurse_client.get(url).status_code == 200
    before = LabResult.objects.count()
    data = {"test": "calcium_total", "value": "25", "unit": "mmol/L", "drawn_at": now_local()}
    implausible = nurse_client.post(url, data)
    assert implausible.status_code == 200 and "value" in implausible.context["form"].errors
    wrong_unit = nurse_client.post(url, {**data, "value": "2.3", "unit": "ng/mL"})
    assert "unit" in wrong_unit.context["form"].errors
    one_limit = nurse_client.post(url, {**data, "value": "2.3", "reference_low": "2.2"})
    assert "reference_high" in one_limit.context["form"].errors
    assert LabResult.objects.count() == before
    ok = nurse_client.post(url, {**data, "value": "9.2", "unit": "mg/dL", "albumin_g_l": "35"})
    assert ok.status_code == 302
    lab = LabResult.objects.filter(patient=clinic.late).order_by("-pk").first()
    assert lab is not None and lab.unit == "mmol/L" and lab.recorded_by == clinic.nurse
    assert lab.corrected_calcium_mmol_l is not None and lab.corrected_calcium_mmol_l > lab.value


def test_add_a_dental_event(clinic: Clinic, nurse_client: Client) -> None:
    url = f"/patients/{clinic.late.public_id}/dental/new/"
    future = nurse_client.post(url, {"event": "clearance", "on": (today() + timedelta(days=3)).isoformat()})
    assert future.status_code == 200 and "on" in future.context["form"].errors
    assert not DentalEvent.objects.filter(event="clearance").exists()
    assert (
        nurse_client.post(url, {"event": "clearance", "on": today().isoformat(), "dentist": "Dr B"}).status_code == 302
    )
    assert DentalEvent.objects.get(event="clearance").recorded_by == clinic.nurse


def test_starting_a_course_shows_the_plan_preview_before_anything_is_saved(
    clinic: Clinic, nurse_client: Client
) -> None:
    url = f"/patients/{clinic.late.public_id}/courses/new/"
    data = {"protocol": "vitamin_d_50000iu", "start_date": today().isoformat(), "action": "preview"}
    preview = nurse_client.post(url, data)
    assert preview.status_code == 200
    added = preview.context["preview"]["added"]
    assert added and all(i["protocol"] == "vitamin_d_50000iu" for i in added)
    token = preview.context["token"]
    assert clinic.late.courses.count() == 1
    # "Confirm" saves only what was previewed.
    stale = nurse_client.post(url, {**data, "action": "confirm", "previewed": "something else"})
    assert stale.status_code == 200 and clinic.late.courses.count() == 1
    assert nurse_client.post(url, {**data, "action": "confirm", "previewed": token}).status_code == 302
    assert clinic.late.courses.filter(protocol="vitamin_d_50000iu").count() == 1


def test_a_bad_course_names_the_field(clinic: Clinic, nurse_client: Client) -> None:
    url = f"/patients/{clinic.late.public_id}/courses/new/"
    response = nurse_client.post(url, {"protocol": "magic", "start_date": "", "action": "preview"})
    assert {"protocol", "start_date"} <= set(response.context["form"].errors)
    assert response.context["preview"] is None and clinic.late.courses.count() == 1


def test_stopping_denosumab_shows_the_consolidation_before_it_is_confirmed(
    clinic: Clinic, nurse_client: Client
) -> None:
    course = clinic.late_course
    url = f"/patients/{clinic.late.public_id}/courses/{course.public_id}/stop/"
    data = {"stop_date": today().isoformat(), "reason": "Fin du traitement", "consolidation": "", "action": "preview"}
    preview = nurse_client.post(url, data)
    added = preview.context["preview"]["added"]
    consolidation = [i for i in added if i["kind"] == "consolidation"]
    assert consolidation and consolidation[0]["protocol"] == "zoledronic_op_5mg"  # CONS-01 by default
    assert "Ce que l'arrêt va programmer" in preview.content.decode()
    assert TreatmentCourse.objects.get(pk=course.pk).stop_date is None
    no_reason = nurse_client.post(url, {**data, "reason": ""})
    assert "reason" in no_reason.context["form"].errors
    confirm = nurse_client.post(url, {**data, "action": "confirm", "previewed": preview.context["token"]})
    assert confirm.status_code == 302
    course.refresh_from_db()
    assert course.stop_date == today() and course.consolidation == "zoledronic_op_5mg"
    assert PlanItem.objects.filter(patient=clinic.late, kind="consolidation", closed_at__isnull=True).exists()
