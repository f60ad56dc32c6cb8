"""Login, throttling, who may use the pages, the care-team switcher, the language, and scope (404)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from patients.models import Role, StaffMembership, User
from scheduling.models import Appointment, Escalation, PlanItem
from scheduling.services import patient_today
from tests.web.scenario import PASSWORD, Clinic

pytestmark = pytest.mark.django_db

PAGES = ("web:worklist", "web:calendar", "web:patients", "web:dashboard")


def test_login_page_is_labelled_and_logs_a_nurse_in_in_her_language(clinic: Clinic) -> None:
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200
    assert b'<label for="id_username">' in page.content and b'<label for="id_password">' in page.content
    response = client.post("/login/", {"username": clinic.other_nurse.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert response.cookies["django_language"].value == "en"
    assert "Overdue worklist" in client.get("/worklist/").content.decode()


def test_a_wrong_password_is_a_form_error_and_a_patient_cannot_log_in(clinic: Clinic) -> None:
    client = Client()
    bad = client.post("/login/", {"username": clinic.nurse.email, "password": "nope"})
    assert bad.status_code == 200 and bad.context["form"].errors
    User.objects.create_user("jeanne@example.test", PASSWORD, role=Role.PATIENT)
    patient = client.post("/login/", {"username": "jeanne@example.test", "password": PASSWORD})
    assert patient.status_code == 200 and patient.context["form"].errors
    assert "_auth_user_id" not in client.session


def test_failed_logins_are_throttled_by_axes(clinic: Clinic) -> None:
    client = Client(REMOTE_ADDR="203.0.113.9")
    statuses = [
        client.post("/login/", {"username": clinic.nurse.email, "password": f"wrong-{k}"}).status_code for k in range(6)
    ]
    assert 429 in statuses
    # Locked out: even the right password is refused now.
    assert client.post("/login/", {"username": clinic.nurse.email, "password": PASSWORD}).status_code == 429
    assert "_auth_user_id" not in client.session


def test_without_axes_the_login_form_throttles_per_ip(clinic: Clinic, settings: Any, monkeypatch: Any) -> None:
    settings.AXES_ENABLED = False
    settings.CARNET_LOGIN_FAILURE_LIMIT = 3
    monkeypatch.setattr("web.views.auth.axes_enabled", lambda: False)
    client = Client(REMOTE_ADDR="198.51.100.7")
    for k in range(3):
        assert client.post("/login/", {"username": clinic.nurse.email, "password": f"bad{k}"}).status_code == 200
    locked = client.post("/login/", {"username": clinic.nurse.email, "password": PASSWORD})
    assert locked.status_code == 429 and "Retry-After" in locked
    assert (
        Client(REMOTE_ADDR="198.51.100.8")
        .post("/login/", {"username": clinic.nurse.email, "password": PASSWORD})
        .status_code
        == 302
    )


@pytest.mark.parametrize("name", PAGES)
def test_pages_need_a_login(clinic: Clinic, name: str) -> None:
    response = Client().get(reverse(name))
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_a_patient_account_gets_403_and_staff_without_team_a_page_saying_so(clinic: Clinic) -> None:
    client = Client()
    client.force_login(User.objects.create_user("p@example.test", PASSWORD, role=Role.PATIENT))
    assert client.get("/worklist/").status_code == 403
    loner = Client()
    loner.force_login(User.objects.create_user("n@example.test", PASSWORD, role=Role.NURSE))
    response = loner.get("/worklist/")
    assert response.status_code == 403 and "web/no_team.html" in [t.name for t in response.templates]


def test_every_page_and_action_of_another_team_is_404(clinic: Clinic, nurse_client: Client) -> None:
    other = clinic.other_patient
    item = PlanItem.objects.filter(patient=other, kind="injection").first()
    assert item is not None
    escalation = Escalation.objects.filter(patient=other).first()
    assert escalation is not None
    course = other.courses.get()
    dose = other.doses.first()
    assert dose is not None
    gets = [
        f"/patients/{other.public_id}/",
        f"/patients/{other.public_id}/doses/new/",
        f"/patients/{other.public_id}/doses/{dose.public_id}/void/",
        f"/patients/{other.public_id}/labs/new/",
        f"/patients/{other.public_id}/dental/new/",
        f"/patients/{other.public_id}/courses/new/",
        f"/patients/{other.public_id}/courses/{course.public_id}/stop/",
        f"/calendar/book/{item.public_id}/",
    ]
    for url in gets:
        assert nurse_client.get(url).status_code == 404, url
    posts = [
        (f"/worklist/{item.public_id}/outcome/", {"outcome": "called"}),
        (f"/escalations/{escalation.public_id}/acknowledge/", {}),
        (f"/patients/{other.public_id}/doses/new/", {}),
    ]
    for url, data in posts:
        assert nurse_client.post(url, data).status_code == 404, url
    # Nothing of the other team shows in the lists either.
    for url in ("/worklist/", "/calendar/", "/patients/", "/dashboard/"):
        assert other.last_name.upper() not in nurse_client.get(url).content.decode(), url
    assert not escalation.__class__.objects.get(pk=escalation.pk).acknowledged_at
    assert not other.worklist_outcomes.exists()  # type: ignore[attr-defined]


def test_another_teams_appointment_is_404(clinic: Clinic, nurse_client: Client) -> None:
    from scheduling.appointments import appointment_book
    from tests.web.scenario import at

    item = PlanItem.objects.get(patient=clinic.other_patient, kind="injection", status__startswith="overdue")
    day = patient_today(clinic.other_patient)
    appt = appointment_book(
        plan_item=item,
        starts_at=at(day, 15),
        nurse=clinic.other_nurse,
        by=clinic.other_nurse,
        out_of_window_reason="late",
    )
    assert nurse_client.get(f"/calendar/appointments/{appt.public_id}/").status_code == 404
    assert nurse_client.post(f"/calendar/appointments/{appt.public_id}/cancel/", {"reason": "x"}).status_code == 404
    assert Appointment.objects.get(pk=appt.pk).status == Appointment.Status.BOOKED


def test_the_team_switcher_changes_the_lists_and_refuses_a_team_that_is_not_yours(clinic: Clinic) -> None:
    StaffMembership.objects.create(user=clinic.nurse, care_team=clinic.other_team, role=Role.NURSE)
    client = Client()
    client.force_login(clinic.nurse)
    client.post("/team/", {"team": clinic.team.pk, "next": "/worklist/"})
    page = client.get("/worklist/").content.decode()
    assert 'id="team-switch"' in page and "MARTIN" in page and "LEROY" not in page
    response = client.post("/team/", {"team": clinic.other_team.pk, "next": "/worklist/"})
    assert response.status_code == 302 and response["Location"] == "/worklist/"
    page = client.get("/worklist/").content.decode()
    assert "LEROY" in page and "MARTIN" not in page
    # A patient of either of her teams opens; the lists follow the current team only.
    assert client.get(f"/patients/{clinic.late.public_id}/").status_code == 200
    stranger = type(clinic.team).objects.create(name="Ailleurs")
    client.post("/team/", {"team": stranger.pk})
    assert client.session["web_team_id"] == clinic.other_team.pk


def test_language_switch_saves_the_users_choice(clinic: Clinic, nurse_client: Client) -> None:
    assert "Liste des retards" in nurse_client.get("/worklist/").content.decode()
    response = nurse_client.post("/i18n/setlang/", {"language": "en", "next": "/worklist/"})
    assert response.status_code == 302 and response["Location"] == "/worklist/"
    assert "Overdue worklist" in nurse_client.get("/worklist/").content.decode()
    clinic.nurse.refresh_from_db()
    assert clinic.nurse.language == "en"


def test_every_string_of_the_pages_has_its_french_translation() -> None:
    """web/locale/fr: no empty msgstr, no fuzzy entry (the committed .mo is compiled from it)."""
    from pathlib import Path

    import web

    po = (Path(web.__file__).parent / "locale" / "fr" / "LC_MESSAGES" / "django.po").read_text(encoding="utf-8")
    entries = po.split("\n\n")[1:]  # the first block is the header
    untranslated = [e for e in entries if 'msgstr ""\n' in e + "\n" and 'msgstr ""\n"' not in e + "\n"]
    assert untranslated == []
    assert "#, fuzzy" not in po
    assert (Path(web.__file__).parent / "locale" / "fr" / "LC_MESSAGES" / "django.mo").stat().st_size > 10_000
