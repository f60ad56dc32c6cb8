"""The admin a nurse can use (issue 2, item 6): scoped to their care teams, no deletes, voids with a reason."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from patients.admin import parse_birth_date
from patients.models import CareTeam, DoseRecord, LabResult, Patient, StaffMembership, User
from tests.factories import (
    CareTeamFactory,
    DentalEventFactory,
    DoseRecordFactory,
    LabResultFactory,
    PatientFactory,
    StaffUserFactory,
    TreatmentCourseFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def replans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Re-planning is the scheduling app's job; here we record which patients the admin re-plans."""
    import scheduling.services

    calls: list[int] = []
    monkeypatch.setattr(scheduling.services, "plan_sync", lambda *, patient, **_kw: calls.append(patient.pk))
    return calls


@pytest.fixture
def team() -> CareTeam:
    return CareTeamFactory(name="Rhumatologie — Hôpital Nord")


@pytest.fixture
def nurse(team: CareTeam) -> User:
    user = StaffUserFactory(email="claire@example.test", role="nurse", is_staff=True)
    StaffMembership.objects.create(user=user, care_team=team, role="nurse")
    return user


@pytest.fixture
def nurse_client(nurse: User) -> Client:
    client = Client()
    client.force_login(nurse)
    return client


@pytest.fixture
def patient(team: CareTeam) -> Patient:
    patient = PatientFactory(care_team=team, first_name="Jeanne", last_name="Dubois", birth_date=date(1958, 4, 12))
    course = TreatmentCourseFactory(patient=patient)
    DoseRecordFactory(course=course, days_ago=20)
    LabResultFactory(patient=patient, days_ago=25)
    DentalEventFactory(patient=patient)
    return patient


def _changelist_names(response: Any) -> set[str]:
    return {str(p.last_name) for p in response.context["cl"].result_list}


def test_nurse_sees_patient_list_change_page_with_inlines_and_history(nurse_client: Client, patient: Patient) -> None:
    response = nurse_client.get("/admin/patients/patient/")
    assert response.status_code == 200
    assert _changelist_names(response) == {"Dubois"}

    change = nurse_client.get(f"/admin/patients/patient/{patient.pk}/change/")
    assert change.status_code == 200
    inline_models = {formset.formset.model for formset in change.context["inline_admin_formsets"]}
    assert {DoseRecord, LabResult} <= inline_models
    assert "LOT-A1234" in change.content.decode()  # the dose's lot number, in its inline row
    assert b"Delete" not in change.content and b"Supprimer" not in change.content  # no delete anywhere

    history = nurse_client.get(f"/admin/patients/patient/{patient.pk}/history/")
    assert history.status_code == 200


@pytest.mark.parametrize("term", ["12/04/1958", "1958-04-12", "dubois 12/04/1958"])
def test_search_by_birth_date_as_a_nurse_types_it(
    nurse_client: Client, patient: Patient, team: CareTeam, term: str
) -> None:
    PatientFactory(care_team=team, last_name="Martin", birth_date=date(1958, 4, 13))
    response = nurse_client.get("/admin/patients/patient/", {"q": term})
    assert response.status_code == 200
    assert _changelist_names(response) == {"Dubois"}


def test_search_by_name(nurse_client: Client, patient: Patient, team: CareTeam) -> None:
    PatientFactory(care_team=team, last_name="Martin")
    response = nurse_client.get("/admin/patients/patient/", {"q": "dubo"})
    assert _changelist_names(response) == {"Dubois"}


def test_parse_birth_date_formats() -> None:
    assert parse_birth_date("12/04/1958") == date(1958, 4, 12)
    assert parse_birth_date("1958-04-12") == date(1958, 4, 12)
    assert parse_birth_date("31/02/1958") is None
    assert parse_birth_date("dubois") is None


def test_filters_by_care_team_and_protocol(nurse_client: Client, nurse: User, patient: Patient) -> None:
    other_team = CareTeamFactory(name="Oncologie thoracique")
    StaffMembership.objects.create(user=nurse, care_team=other_team, role="nurse")
    onco = PatientFactory(care_team=other_team, last_name="Bernard")
    TreatmentCourseFactory(patient=onco, protocol="zoledronic_onco_4mg", indication="oncology")

    by_team = nurse_client.get("/admin/patients/patient/", {"care_team": other_team.pk})
    assert _changelist_names(by_team) == {"Bernard"}
    by_protocol = nurse_client.get("/admin/patients/patient/", {"protocol": "denosumab_op_60mg_q6m"})
    assert _changelist_names(by_protocol) == {"Dubois"}
    active_zol = nurse_client.get("/admin/patients/patient/", {"protocol": "zoledronic_onco_4mg:active"})
    assert _changelist_names(active_zol) == {"Bernard"}


def test_nurse_of_another_team_does_not_see_the_patient(patient: Patient) -> None:
    stranger = StaffUserFactory(email="autre@example.test", role="nurse", is_staff=True)
    StaffMembership.objects.create(user=stranger, care_team=CareTeamFactory(name="Autre service"), role="nurse")
    client = Client()
    client.force_login(stranger)

    assert _changelist_names(client.get("/admin/patients/patient/")) == set()
    assert client.get(f"/admin/patients/patient/{patient.pk}/change/").status_code in (302, 404)
    assert client.get(f"/admin/patients/patient/{patient.pk}/history/").status_code in (403, 404)
    dose = patient.doses.get()
    assert client.get(f"/admin/patients/doserecord/{dose.pk}/change/").status_code in (302, 404)
    assert client.get(f"/admin/patients/doserecord/{dose.pk}/history/").status_code in (403, 404)
    version = dose.history.first().history_id
    assert client.get(f"/admin/patients/doserecord/{dose.pk}/history/{version}/").status_code in (403, 404)
    assert client.get("/admin/patients/doserecord/").context["cl"].result_count == 0


def test_patient_role_and_non_staff_are_kept_out(patient: Patient) -> None:
    patient_user = StaffUserFactory(email="patient@example.test", role="patient", is_staff=True)
    client = Client()
    client.force_login(patient_user)
    assert client.get("/admin/patients/patient/").status_code == 403


def test_no_delete_permission_on_medical_records(nurse_client: Client, patient: Patient) -> None:
    dose = patient.doses.get()
    assert nurse_client.get(f"/admin/patients/doserecord/{dose.pk}/delete/").status_code == 403
    assert nurse_client.get(f"/admin/patients/patient/{patient.pk}/delete/").status_code == 403
    changelist = nurse_client.get("/admin/patients/doserecord/")
    assert "delete_selected" not in changelist.context["action_form"].fields["action"].choices.__repr__()
    assert DoseRecord.objects.filter(pk=dose.pk).exists()


def test_void_action_needs_a_reason_then_voids_audits_and_replans(
    nurse_client: Client, nurse: User, patient: Patient, replans: list[int]
) -> None:
    dose = patient.doses.get()
    url = "/admin/patients/doserecord/"
    nurse_client.post(url, {"action": "void_selected", "_selected_action": [dose.pk], "reason": ""})
    dose.refresh_from_db()
    assert dose.voided_at is None  # no reason, no void

    nurse_client.post(url, {"action": "void_selected", "_selected_action": [dose.pk], "reason": "Mauvais patient"})
    dose.refresh_from_db()
    assert dose.voided_at is not None
    assert (dose.void_reason, dose.voided_by) == ("Mauvais patient", nurse)
    assert dose.history.first().history_user == nurse
    assert replans == [patient.pk]

    page = nurse_client.get(f"/admin/patients/doserecord/{dose.pk}/history/")
    assert page.status_code == 200
    assert "Mauvais patient" in page.content.decode()  # the void shows in the history's changes


def test_voided_row_is_read_only_in_the_patient_inline(
    nurse_client: Client, patient: Patient, replans: list[int]
) -> None:
    dose = patient.doses.get()
    dose.voided_at = timezone.now()
    dose.void_reason = "Doublon"
    dose.save(update_fields=["voided_at", "void_reason"])
    page = nurse_client.get(f"/admin/patients/patient/{patient.pk}/change/")
    dose_formset = next(f.formset for f in page.context["inline_admin_formsets"] if f.formset.model is DoseRecord)
    form = dose_formset.forms[0]
    editable = {name for name in form.fields if name not in ("id", "patient")}  # hidden keys added by the formset
    assert {"given_at", "dose_value", "lot_number", "void_with_reason"} <= editable
    assert all(form.fields[name].disabled for name in editable)
    assert "VOIDED" in page.content.decode()
    assert nurse_client.get(f"/admin/patients/doserecord/{dose.pk}/change/").context["has_change_permission"] is False


def _inline_post(page: Any) -> dict[str, Any]:
    """The change form's data as the browser would post it back unchanged."""
    data: dict[str, Any] = {}
    adminform = page.context["adminform"].form
    for name, field in adminform.fields.items():
        value = adminform.initial.get(name, field.initial)
        if value is None:
            continue
        if isinstance(value, list):
            import json

            value = json.dumps(value)
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = value
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[f"{formset.prefix}-{name}"] = management.initial.get(name, management[name].value())
        for form in formset.forms:
            for name, field in form.fields.items():
                value = form.initial.get(name, field.initial)
                if value is None or (isinstance(value, bool) and not value):
                    continue
                if hasattr(value, "pk"):
                    value = value.pk
                if isinstance(value, timezone.datetime):
                    local = timezone.localtime(value)
                    data[f"{form.prefix}-{name}_0"] = local.strftime("%d/%m/%Y")
                    data[f"{form.prefix}-{name}_1"] = local.strftime("%H:%M:%S")
                    continue
                if isinstance(value, date):
                    value = value.strftime("%d/%m/%Y")
                data[f"{form.prefix}-{name}"] = "on" if value is True else value
    return data


def test_void_from_the_patient_page_with_a_reason(
    nurse_client: Client, nurse: User, patient: Patient, replans: list[int]
) -> None:
    url = f"/admin/patients/patient/{patient.pk}/change/"
    data = _inline_post(nurse_client.get(url))
    lab = patient.labs.get()
    prefix = next(k for k, v in data.items() if k.endswith("-id") and str(v) == str(lab.pk) and "lab" in k)[:-3]
    data[f"{prefix}-void_with_reason"] = "Prélèvement hémolysé"
    response = nurse_client.post(url, data)
    assert response.status_code == 302, response.context["errors"] if response.context else response
    lab.refresh_from_db()
    assert lab.void_reason == "Prélèvement hémolysé" and lab.voided_by == nurse
    assert patient.pk in replans


def test_bad_lab_from_the_patient_page_is_refused_and_changes_nothing(
    nurse_client: Client, patient: Patient, replans: list[int]
) -> None:
    url = f"/admin/patients/patient/{patient.pk}/change/"
    data = _inline_post(nurse_client.get(url))
    lab = patient.labs.get()
    before = (LabResult.objects.count(), lab.value_entered, lab.value)
    prefix = next(k for k, v in data.items() if k.endswith("-id") and str(v) == str(lab.pk) and "lab" in k)[:-3]
    data[f"{prefix}-value_entered"] = "25"  # 25 mmol/L of calcium: implausible
    response = nurse_client.post(url, data)
    assert response.status_code == 200  # the form again, with the error
    assert "plausible" in response.content.decode()
    lab.refresh_from_db()
    assert (LabResult.objects.count(), lab.value_entered, lab.value) == before
    assert replans == []


def test_add_a_dose_from_the_patient_page_records_who(
    nurse_client: Client, nurse: User, patient: Patient, replans: list[int]
) -> None:
    url = f"/admin/patients/patient/{patient.pk}/change/"
    data = _inline_post(nurse_client.get(url))
    prefix = next(k for k in data if k.endswith("-TOTAL_FORMS") and "dose" in k)[: -len("-TOTAL_FORMS")]
    index = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = index + 1
    given = timezone.localtime() - timedelta(days=2)
    course = patient.courses.get()
    new = {
        "given_at_0": given.strftime("%d/%m/%Y"),
        "given_at_1": "10:30:00",
        "course": course.pk,
        "product": "denosumab",
        "dose_value": "60",
        "dose_unit": "mg",
        "route": "SC",
        "injection_site": "abdomen",
        "lot_number": "LOT-NEW",
        "source": "staff",
        "given_by": nurse.pk,
    }
    for name, value in new.items():
        data[f"{prefix}-{index}-{name}"] = value
    data[f"{prefix}-{index}-patient"] = patient.pk
    response = nurse_client.post(url, data)
    assert response.status_code == 302, response.context["errors"] if response.context else response
    dose = DoseRecord.objects.get(lot_number="LOT-NEW")
    assert dose.recorded_by == nurse
    assert dose.given_on == given.date()
    assert dose.dose_value == Decimal(60)
    assert dose.history.get().history_user == nurse
    assert patient.pk in replans


def test_user_admin_uses_email_login(team: CareTeam) -> None:
    admin_user = User.objects.create_superuser("root@example.test", "pw-carnet-123")
    client = Client()
    client.force_login(admin_user)
    assert client.get("/admin/patients/user/").status_code == 200
    response = client.post(
        "/admin/patients/user/add/",
        {
            "email": "nouvelle@example.test",
            "role": "nurse",
            "usable_password": "true",
            "password1": "Un-mot-de-passe-long-42",
            "password2": "Un-mot-de-passe-long-42",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-care_team": team.pk,
            "memberships-0-role": "nurse",
        },
    )
    assert response.status_code == 302, response.context["errors"] if response.context else response
    created = User.objects.get(email="nouvelle@example.test")
    assert created.check_password("Un-mot-de-passe-long-42") and created.role == "nurse"
    assert created.memberships.get().care_team == team
    assert client.get(f"/admin/patients/careteam/{team.pk}/change/").status_code == 200


def test_team_admin_sees_their_team_with_memberships_but_nurse_cannot_edit_it(
    team: CareTeam, nurse: User, nurse_client: Client
) -> None:
    boss = StaffUserFactory(email="cadre@example.test", role="team_admin", is_staff=True)
    StaffMembership.objects.create(user=boss, care_team=team, role="team_admin")
    client = Client()
    client.force_login(boss)
    page = client.get(f"/admin/patients/careteam/{team.pk}/change/")
    assert page.status_code == 200 and page.context["has_change_permission"] is True
    assert "claire@example.test" in page.content.decode() or str(nurse.pk) in page.content.decode()
    users = client.get("/admin/patients/user/")
    assert {u.email for u in users.context["cl"].result_list} == {"claire@example.test", "cadre@example.test"}

    nurse_page = nurse_client.get(f"/admin/patients/careteam/{team.pk}/change/")
    assert nurse_page.status_code == 200 and nurse_page.context["has_change_permission"] is False
    assert nurse_client.get("/admin/patients/user/").status_code == 403


def test_course_with_live_doses_cannot_be_voided_from_the_form(
    nurse_client: Client, patient: Patient, replans: list[int]
) -> None:
    url = f"/admin/patients/patient/{patient.pk}/change/"
    data = _inline_post(nurse_client.get(url))
    course = patient.courses.get()
    prefix = next(k for k, v in data.items() if k.endswith("-id") and str(v) == str(course.pk) and "course" in k)[:-3]
    data[f"{prefix}-void_with_reason"] = "Erreur de protocole"
    response = nurse_client.post(url, data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "doses first" in page or "Annulez d&#x27;abord les doses" in page or "Annulez d'abord les doses" in page
    course.refresh_from_db()
    assert course.voided_at is None and replans == []


def test_entry_cannot_move_to_another_patient(nurse_client: Client, patient: Patient) -> None:
    dose = patient.doses.get()
    page = nurse_client.get(f"/admin/patients/doserecord/{dose.pk}/change/")
    assert "patient" not in page.context["adminform"].form.fields


def test_blocked_dose_from_the_patient_page_is_refused_like_the_service(
    nurse_client: Client, nurse: User, patient: Patient, replans: list[int]
) -> None:
    """CA-05: no calcium drawn in the 30 days before the injection blocks it, in the admin as in the API."""
    long_ago = timezone.now() - timedelta(days=200)
    patient.labs.update(drawn_at=long_ago, drawn_on=timezone.localdate(long_ago))
    url = f"/admin/patients/patient/{patient.pk}/change/"
    data = _inline_post(nurse_client.get(url))
    prefix = next(k for k in data if k.endswith("-TOTAL_FORMS") and "dose" in k)[: -len("-TOTAL_FORMS")]
    index = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = index + 1
    given = timezone.localtime() - timedelta(days=1)
    new = {
        "given_at_0": given.strftime("%d/%m/%Y"),
        "given_at_1": "10:30:00",
        "course": patient.courses.get().pk,
        "product": "denosumab",
        "dose_value": "60",
        "dose_unit": "mg",
        "route": "SC",
        "injection_site": "abdomen",
        "lot_number": "LOT-BLOCKED",
        "source": "staff",
        "given_by": nurse.pk,
        "patient": patient.pk,
    }
    for name, value in new.items():
        data[f"{prefix}-{index}-{name}"] = value
    response = nurse_client.post(url, data)
    assert response.status_code == 200
    assert "CALCIUM_CHECK_REQUIRED" in response.content.decode()
    assert not DoseRecord.objects.filter(lot_number="LOT-BLOCKED").exists()
    assert replans == []
