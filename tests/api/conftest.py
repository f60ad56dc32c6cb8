"""Two care teams, two patients with accounts, and staff of every role, built through the services.

Patient A belongs to team 1 and has one of everything (course, overdue dose, lab, dental event,
co-medication, open escalation, appointment, push device, calendar feed): the objects the
permission matrix tries to reach from every other role. Patient B belongs to team 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

PARIS = ZoneInfo("Europe/Paris")
PASSWORD = "carnet-api-test-1"


def days_ago(n: int, hour: int = 10) -> datetime:
    return datetime.combine(timezone.localdate(timezone=PARIS) - timedelta(days=n), time(hour), PARIS)


def day_ago(n: int) -> date:
    return timezone.localdate(timezone=PARIS) - timedelta(days=n)


@dataclass
class World:
    team1: Any
    team2: Any
    users: dict[str, Any]
    patient_a: Any
    patient_b: Any
    course_a: Any
    dose_a: Any
    lab_a: Any
    dental_a: Any
    comed_a: Any
    item_a: Any
    escalation_a: Any
    appointment_a: Any
    device_a: Any
    course_b: Any

    def client(self, role: str) -> APIClient:
        client = APIClient()
        if role != "anonymous":
            client.force_authenticate(self.users[role])
        return client


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    """Throttle counters live in the cache, rendered plans and booklets in the process: every
    test starts with none."""
    from patients.api import BOOKLETS
    from scheduling.api import PLANS

    for kept in (cache, BOOKLETS, PLANS):
        kept.clear()
    yield
    for kept in (cache, BOOKLETS, PLANS):
        kept.clear()


def make_staff(email: str, role: str, team: Any) -> Any:
    from patients.models import StaffMembership, User

    user = User.objects.create_user(email, PASSWORD, role=role, first_name=role.title())
    StaffMembership.objects.create(user=user, care_team=team, role=role)
    return user


def make_patient(team: Any, by: Any, email: str, **fields: Any) -> Any:
    from patients import services
    from patients.models import User

    user = User.objects.create_user(email, PASSWORD, role="patient")
    values = {
        "first_name": "Jeanne",
        "last_name": "Martin",
        "birth_date": date(1956, 4, 12),
        "sex": "F",
        "language": "en",
    }
    values.update(fields)
    return services.patient_create(care_team=team, by=by, user=user, **values)


def give_denosumab(patient: Any, course: Any, by: Any, when: datetime, **extra: Any) -> Any:
    from patients import services

    values: dict[str, Any] = {
        "patient": patient,
        "course": course,
        "product": "denosumab",
        "dose_value": Decimal(60),
        "dose_unit": "mg",
        "route": "SC",
        "given_at": when,
        "by": by,
        "given_by": by,
        "injection_site": "abdomen",
        "lot_number": "LOT-42A",
    }
    values.update(extra)
    return services.dose_record(**values)


@pytest.fixture
def world(db: Any, settings: Any) -> World:
    # Password hashing is not what these tests are about: a fast hasher keeps the matrix quick.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return build_world()


def build_world() -> World:
    from notifications.services import device_register
    from patients import services
    from patients.models import CareTeam
    from scheduling.appointments import appointment_book
    from scheduling.feeds import feed_create
    from scheduling.models import Escalation, PlanItem

    team1 = CareTeam.objects.create(name="Rhumatologie Lyon-Sud")
    team2 = CareTeam.objects.create(name="Oncologie Bordeaux")
    users = {
        "nurse1": make_staff("nurse1@example.org", "nurse", team1),
        "nurse2": make_staff("nurse2@example.org", "nurse", team2),
        "physician2": make_staff("physician2@example.org", "physician", team2),
        "admin2": make_staff("admin2@example.org", "team_admin", team2),
    }
    nurse1 = users["nurse1"]
    patient_a = make_patient(team1, nurse1, "patient.a@example.org", first_name="Alice", last_name="Arnaud")
    patient_b = make_patient(team2, users["nurse2"], "patient.b@example.org", first_name="Berthe", last_name="Bernard")
    users["patient_a"] = patient_a.user
    users["patient_b"] = patient_b.user
    # Denosumab 60 mg given 230 days ago: the next injection is overdue (OP-04 ladder open).
    services.dental_event_add(patient=patient_a, event="exam", on=day_ago(260), by=nurse1)
    services.lab_add(
        patient=patient_a,
        test="calcium_total",
        value=Decimal("2.35"),
        unit="mmol/L",
        drawn_at=days_ago(235),
        albumin_g_l=Decimal("40"),
        by=nurse1,
    )
    course_a = services.course_start(
        patient=patient_a, protocol="denosumab_op_60mg_q6m", start_date=day_ago(230), by=nurse1
    )
    dose_a = give_denosumab(patient_a, course_a, nurse1, days_ago(230))
    lab_a = services.lab_add(
        patient=patient_a,
        test="calcium_total",
        value=Decimal("2.30"),
        unit="mmol/L",
        drawn_at=days_ago(5),
        albumin_g_l=Decimal("40"),
        by=nurse1,
    )
    dental_a = services.dental_event_add(patient=patient_a, event="exam", on=day_ago(20), by=nurse1)
    comed_a = services.comedication_add(
        patient=patient_a,
        name="prednisone",
        drug_class="glucocorticoid",
        start_date=day_ago(100),
        mg_per_day=Decimal("5"),
        by=nurse1,
    )
    item_a = PlanItem.objects.filter(patient=patient_a, kind="injection", status__startswith="overdue").get()
    escalation_a = Escalation.objects.filter(patient=patient_a, resolved_at__isnull=True).order_by("level").first()
    assert escalation_a is not None, "the overdue injection should have opened its ladder"
    appointment_a = appointment_book(
        plan_item=item_a,
        starts_at=days_ago(-2, 9),
        nurse=nurse1,
        by=nurse1,
        out_of_window_reason="overdue: first free slot",
    )
    device_a = device_register(patient=patient_a, channel="fcm", endpoint="fcm-token-of-patient-a")
    feed_create(kind="patient", patient=patient_a, by=patient_a.user)
    feed_create(kind="patient", patient=patient_b, by=patient_b.user)
    course_b = services.course_start(
        patient=patient_b, protocol="zoledronic_onco_4mg", start_date=day_ago(10), by=users["nurse2"]
    )
    return World(
        team1=team1,
        team2=team2,
        users=users,
        patient_a=patient_a,
        patient_b=patient_b,
        course_a=course_a,
        dose_a=dose_a,
        lab_a=lab_a,
        dental_a=dental_a,
        comed_a=comed_a,
        item_a=item_a,
        escalation_a=escalation_a,
        appointment_a=appointment_a,
        device_a=device_a,
        course_b=course_b,
    )
