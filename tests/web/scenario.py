"""A small clinic built through the real services (so the stored plan is the rules' own), shared by
the page tests and the browser scenario.

- ``late``: denosumab 60 mg, last dose 223 days ago (about 40 days past due: OP-04 L3, rebound risk);
  calcium 3 days ago and vitamin D fine, so a dose today is not blocked.
- ``slightly_late``: denosumab 60 mg, last dose 190 days ago (a week past due: L1).
- ``blocked``: denosumab 60 mg due in the window with no calcium in the last 30 days (CA-05 block).
- another care team with its own nurse and patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils import timezone

from patients.models import CareTeam, Patient, Role, StaffMembership, TreatmentCourse, User
from scheduling.services import plan_sync
from tests.factories import (
    DentalEventFactory,
    DoseRecordFactory,
    LabResultFactory,
    PatientFactory,
    TreatmentCourseFactory,
)

PARIS = ZoneInfo("Europe/Paris")
PASSWORD = "carnet-web-test-pw"


def today() -> date:
    return timezone.localdate(timezone=PARIS)


def at(day: date, hour: int = 11) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=PARIS)


def staff(email: str, team: CareTeam, *, first: str, last: str, role: str = Role.NURSE, language: str = "fr") -> User:
    user = User.objects.create_user(email, PASSWORD, role=role, first_name=first, last_name=last, language=language)
    StaffMembership.objects.create(user=user, care_team=team, role=role)
    return user


def denosumab_patient(
    team: CareTeam, by: User, *, first: str, last: str, last_dose_days_ago: int, calcium_days_ago: int | None = 3
) -> tuple[Patient, TreatmentCourse]:
    """Three denosumab 60 mg doses six months apart, the last ``last_dose_days_ago`` days ago.

    The history is written with the factories (fast, no re-planning per row), then the plan is
    computed once with ``plan_sync``, exactly as the services would leave it.
    """
    now = today()
    patient = PatientFactory(care_team=team, first_name=first, last_name=last, phone="+33 6 12 34 56 78")
    start = now - timedelta(days=last_dose_days_ago + 370)
    course = TreatmentCourseFactory(patient=patient, start_date=start, recorded_by=by)
    DentalEventFactory(patient=patient, event="exam", days_ago=(now - start).days + 20)
    DentalEventFactory(patient=patient, event="panoramic_xray", days_ago=(now - start).days + 20)
    LabResultFactory(patient=patient, test="25ohd", value_entered=Decimal("34"), days_ago=(now - start).days + 10)
    for k, days in enumerate((last_dose_days_ago + 366, last_dose_days_ago + 183, last_dose_days_ago)):
        LabResultFactory(patient=patient, value_entered=Decimal("2.31") + Decimal(k) / 50, days_ago=days + 6)
        DoseRecordFactory(course=course, days_ago=days, lot_number=f"DMB{1000 + k}A", recorded_by=by, given_by=by)
    if calcium_days_ago is not None:
        LabResultFactory(patient=patient, value_entered=Decimal("2.34"), days_ago=calcium_days_ago)
        LabResultFactory(patient=patient, test="25ohd", value_entered=Decimal("36"), days_ago=calcium_days_ago)
    plan_sync(patient=patient)
    return patient, course


@dataclass
class Clinic:
    team: CareTeam
    nurse: User
    colleague: User
    late: Patient
    late_course: TreatmentCourse
    slightly_late: Patient
    blocked: Patient
    other_team: CareTeam
    other_nurse: User
    other_patient: Patient


def build_clinic() -> Clinic:
    team = CareTeam.objects.create(name="Rhumatologie Lyon-Sud")
    nurse = staff("claire.moreau@example.test", team, first="Claire", last="Moreau")
    colleague = staff("paul.girard@example.test", team, first="Paul", last="Girard")
    late, late_course = denosumab_patient(team, nurse, first="Jeanne", last="Martin", last_dose_days_ago=223)
    slightly_late, _ = denosumab_patient(team, nurse, first="Lucie", last="Bernard", last_dose_days_ago=190)
    blocked, _ = denosumab_patient(
        team, nurse, first="Odile", last="Petit", last_dose_days_ago=180, calcium_days_ago=None
    )
    other_team = CareTeam.objects.create(name="Oncologie Nord")
    other_nurse = staff("marc.roux@example.test", other_team, first="Marc", last="Roux", language="en")
    other_patient, _ = denosumab_patient(other_team, other_nurse, first="Anne", last="Leroy", last_dose_days_ago=200)
    return Clinic(
        team, nurse, colleague, late, late_course, slightly_late, blocked, other_team, other_nurse, other_patient
    )
