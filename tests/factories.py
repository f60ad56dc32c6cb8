"""factory_boy factories for the patients models.

``.build()`` needs no database: derived columns (``given_on``, the normalised lab value, the
corrected calcium) are computed here with the same helpers as ``clean()``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import factory
from django.utils import timezone

from patients.models import (
    PROTOCOL_INDICATION,
    CareTeam,
    Comedication,
    DentalEvent,
    DoseRecord,
    InjectionSite,
    LabResult,
    Patient,
    Product,
    Protocol,
    Role,
    Route,
    Sex,
    StaffMembership,
    TreatmentCourse,
    User,
)
from patients.units import LAB_TESTS, corrected_calcium, normalise

PARIS = ZoneInfo("Europe/Paris")


def local_noon(day: date, tz: ZoneInfo = PARIS) -> datetime:
    """An aware instant on ``day`` in ``tz`` (midday, far from any midnight edge)."""
    return datetime.combine(day, time(12, 0), tzinfo=tz)


def _today() -> date:
    return timezone.localdate(timezone=PARIS)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    first_name = factory.Faker("first_name", locale="fr_FR")
    last_name = factory.Faker("last_name", locale="fr_FR")
    role = Role.PATIENT
    password = factory.django.Password("carnet-test")


class StaffUserFactory(UserFactory):
    email = factory.Sequence(lambda n: f"staff{n}@example.test")
    role = Role.NURSE
    is_staff = True


class CareTeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CareTeam
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Service de rhumatologie {n}")
    kind = CareTeam.Kind.HOSPITAL_SERVICE
    timezone = "Europe/Paris"


class StaffMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StaffMembership

    user = factory.SubFactory(StaffUserFactory)
    care_team = factory.SubFactory(CareTeamFactory)
    role = factory.SelfAttribute("user.role")


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    care_team = factory.SubFactory(CareTeamFactory)
    first_name = factory.Faker("first_name_female", locale="fr_FR")
    last_name = factory.Faker("last_name", locale="fr_FR")
    birth_date = date(1950, 3, 14)
    sex = Sex.FEMALE
    timezone = "Europe/Paris"
    weight_kg = Decimal("62.0")


class TreatmentCourseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TreatmentCourse

    patient = factory.SubFactory(PatientFactory)
    protocol = Protocol.DENOSUMAB_OP
    indication = factory.LazyAttribute(lambda o: PROTOCOL_INDICATION.get(Protocol(o.protocol), "osteoporosis"))
    start_date = factory.LazyFunction(lambda: _today() - timedelta(days=400))


# Product, dose, unit and route of one dose of each protocol.
PROTOCOL_DOSE: dict[str, tuple[str, Decimal, str, str]] = {
    Protocol.DENOSUMAB_OP: (Product.DENOSUMAB, Decimal(60), "mg", Route.SC),
    Protocol.DENOSUMAB_ONCO: (Product.DENOSUMAB, Decimal(120), "mg", Route.SC),
    Protocol.ZOLEDRONIC_ONCO: (Product.ZOLEDRONIC_ACID, Decimal(4), "mg", Route.IV),
    Protocol.ZOLEDRONIC_OP: (Product.ZOLEDRONIC_ACID, Decimal(5), "mg", Route.IV),
    Protocol.ALENDRONATE_OP: (Product.ALENDRONATE, Decimal(70), "mg", Route.PO),
    Protocol.VITAMIN_D: (Product.CHOLECALCIFEROL, Decimal(50000), "IU", Route.PO),
}


def _dose_part(index: int) -> Any:
    return factory.LazyAttribute(
        lambda o: PROTOCOL_DOSE[o.course.protocol if o.course else Protocol.DENOSUMAB_OP][index]
    )


class DoseRecordFactory(factory.django.DjangoModelFactory):
    """A staff-given dose of the course's protocol, ``days_ago`` days ago (default 30)."""

    class Meta:
        model = DoseRecord

    class Params:
        days_ago = 30

    course = factory.SubFactory(TreatmentCourseFactory)
    patient = factory.SelfAttribute("course.patient")
    product = _dose_part(0)
    dose_value = _dose_part(1)
    dose_unit = _dose_part(2)
    route = _dose_part(3)
    given_at = factory.LazyAttribute(lambda o: local_noon(_today() - timedelta(days=o.days_ago)))
    given_on = factory.LazyAttribute(lambda o: o.patient.local_date(o.given_at))
    injection_site = factory.LazyAttribute(
        lambda o: {Route.IV: InjectionSite.IV_LEFT, Route.SC: InjectionSite.ABDOMEN}.get(o.route, "")
    )
    lot_number = factory.LazyAttribute(lambda o: "LOT-A1234" if o.route in (Route.SC, Route.IV) else "")
    source = DoseRecord.Source.STAFF


class LabResultFactory(factory.django.DjangoModelFactory):
    """A lab value as entered; the normalised value and corrected calcium are filled in as clean() would."""

    class Meta:
        model = LabResult

    class Params:
        days_ago = 10

    patient = factory.SubFactory(PatientFactory)
    test = LabResult.Test.CALCIUM_TOTAL
    value_entered = Decimal("2.35")
    unit_entered = factory.LazyAttribute(lambda o: LAB_TESTS[o.test].unit)
    value = factory.LazyAttribute(lambda o: normalise(o.test, Decimal(o.value_entered), o.unit_entered))
    unit = factory.LazyAttribute(lambda o: LAB_TESTS[o.test].unit)
    albumin_g_l = None
    corrected_calcium_mmol_l = factory.LazyAttribute(
        lambda o: corrected_calcium(o.value, o.albumin_g_l) if o.test == LabResult.Test.CALCIUM_TOTAL else None
    )
    drawn_at = factory.LazyAttribute(lambda o: local_noon(_today() - timedelta(days=o.days_ago)))
    drawn_on = factory.LazyAttribute(lambda o: o.patient.local_date(o.drawn_at))


class DentalEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DentalEvent

    class Params:
        days_ago = 30

    patient = factory.SubFactory(PatientFactory)
    event = DentalEvent.Event.EXAM
    date = factory.LazyAttribute(lambda o: _today() - timedelta(days=o.days_ago))
    dentist = "Dr Lefèvre"


class ComedicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Comedication

    patient = factory.SubFactory(PatientFactory)
    name = "prednisone"
    drug_class = Comedication.DrugClass.GLUCOCORTICOID
    mg_per_day = Decimal("10")
    start_date = factory.LazyFunction(lambda: _today() - timedelta(days=200))
