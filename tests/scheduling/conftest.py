from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

PARIS = ZoneInfo("Europe/Paris")


def at(day: str, hour: int = 10) -> datetime:
    """A Paris wall-clock instant on ``day``."""
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), PARIS).replace(hour=hour)


@pytest.fixture
def team(db: Any) -> Any:
    from patients.models import CareTeam

    return CareTeam.objects.create(name="Rhumatologie Lyon-Sud")


@pytest.fixture
def nurse(team: Any) -> Any:
    from patients.models import Role, StaffMembership, User

    user = User.objects.create_user("nurse@example.org", "pw-nurse-123", role=Role.NURSE, first_name="Nadia")
    StaffMembership.objects.create(user=user, care_team=team, role=Role.NURSE)
    return user


@pytest.fixture
def make_patient(team: Any, nurse: Any) -> Any:
    from patients import services

    def make(**fields: Any) -> Any:
        values = {"first_name": "Jeanne", "last_name": "Martin", "birth_date": date(1958, 4, 12), "sex": "F"}
        values.update(fields)
        return services.patient_create(care_team=team, by=nurse, **values)

    return make


@pytest.fixture
def give(nurse: Any) -> Any:
    """Record a staff injection on a Paris date through the service."""
    from patients import services

    def give_dose(patient: Any, course: Any, day: str, **extra: Any) -> Any:
        product, dose = {
            "denosumab_op_60mg_q6m": ("denosumab", "60"),
            "denosumab_onco_120mg": ("denosumab", "120"),
            "zoledronic_onco_4mg": ("zoledronic_acid", "4"),
            "zoledronic_op_5mg": ("zoledronic_acid", "5"),
        }[course.protocol]
        values: dict[str, Any] = {
            "patient": patient,
            "course": course,
            "product": product,
            "dose_value": Decimal(dose),
            "dose_unit": "mg",
            "route": "SC" if product == "denosumab" else "IV",
            "given_at": at(day, 8),
            "by": nurse,
            "given_by": nurse,
            "injection_site": "abdomen" if product == "denosumab" else "iv_left",
            "lot_number": "LOT-42A",
        }
        values.update(extra)
        return services.dose_record(**values)

    return give_dose


@pytest.fixture
def calcium(nurse: Any) -> Any:
    from patients import services

    def add(patient: Any, day: str, value: str = "2.35", albumin: str | None = "40") -> Any:
        return services.lab_add(
            patient=patient,
            test="calcium_total",
            value=Decimal(value),
            unit="mmol/L",
            drawn_at=at(day, 8),
            albumin_g_l=None if albumin is None else Decimal(albumin),
            by=nurse,
        )

    return add
