"""Validation a nurse would expect from the booklet models (issue 2, item 4) and CA-01 / VITD-01 units."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict
from django.utils import timezone, translation

from patients.models import DoseRecord, LabResult, Patient, Protocol, TreatmentCourse
from tests.factories import (
    DentalEventFactory,
    DoseRecordFactory,
    LabResultFactory,
    PatientFactory,
    TreatmentCourseFactory,
    local_noon,
)

pytestmark = pytest.mark.django_db


def _errors(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, list[str]]:
    return exc.value.message_dict


def _today() -> date:
    return timezone.localdate()


def _lab(patient: Patient, test: str, value: str, unit: str, **extra: object) -> LabResult:
    return LabResult(
        patient=patient,
        test=test,
        value_entered=Decimal(value),
        unit_entered=unit,
        drawn_at=timezone.now() - timedelta(days=2),
        **extra,
    )


def _dose(course: TreatmentCourse, *, days_ago: int = 3, **extra: object) -> DoseRecord:
    values: dict[str, object] = {
        "patient": course.patient,
        "course": course,
        "product": "denosumab",
        "dose_value": Decimal(60),
        "dose_unit": "mg",
        "route": "SC",
        "given_at": local_noon(_today() - timedelta(days=days_ago)),
        "injection_site": "abdomen",
        "lot_number": "LOT-1",
        "source": DoseRecord.Source.STAFF,
    }
    values.update(extra)
    return DoseRecord(**values)


# --- dates -----------------------------------------------------------------------------------


def test_dose_dated_in_the_future_is_refused_on_given_at() -> None:
    course = TreatmentCourseFactory()
    dose = _dose(course, given_at=timezone.now() + timedelta(days=1))
    with pytest.raises(ValidationError) as exc:
        dose.full_clean()
    assert "given_at" in _errors(exc)
    assert "future" in _errors(exc)["given_at"][0]


def test_lab_dated_in_the_future_is_refused_on_drawn_at() -> None:
    lab = _lab(PatientFactory(), "calcium_total", "2.30", "mmol/L")
    lab.drawn_at = timezone.now() + timedelta(hours=2)
    with pytest.raises(ValidationError) as exc:
        lab.full_clean()
    assert "drawn_at" in _errors(exc)


def test_dental_event_in_the_future_is_refused() -> None:
    event = DentalEventFactory.build(patient=PatientFactory(), days_ago=-3)
    with pytest.raises(ValidationError) as exc:
        event.full_clean()
    assert "date" in _errors(exc)


def test_dose_before_its_course_starts_is_refused_unless_entered_as_history() -> None:
    course = TreatmentCourseFactory(start_date=_today() - timedelta(days=10))
    early = _dose(course, days_ago=40)
    with pytest.raises(ValidationError) as exc:
        early.full_clean()
    assert "given_at" in _errors(exc)
    assert course.start_date.isoformat() in _errors(exc)["given_at"][0]

    history = _dose(course, days_ago=40, source=DoseRecord.Source.HISTORY, lot_number="", injection_site="")
    history.full_clean()  # accepted: an earlier dose copied from a paper booklet
    history.save()
    assert history.given_on == _today() - timedelta(days=40)


def test_given_on_is_the_local_date_in_the_patients_time_zone() -> None:
    """TIME-01: 23:30 UTC on 19 March is 00:30 on 20 March in Paris."""
    course = TreatmentCourseFactory(start_date=date(2024, 1, 1))
    instant = datetime(2024, 3, 19, 23, 30, tzinfo=UTC)
    dose = _dose(course, given_at=instant)
    dose.full_clean()
    assert dose.given_on.isoformat() == "2024-03-20"


# --- units and plausible ranges --------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "value", "unit", "stored", "stored_unit"),
    [
        ("25ohd", "75", "nmol/L", Decimal("30.0"), "ng/mL"),  # VITD-01: nmol/L = ng/mL x 2.5
        ("25ohd", "30", "ng/mL", Decimal("30.0"), "ng/mL"),
        ("calcium_total", "9.2", "mg/dL", Decimal("2.295"), "mmol/L"),  # CA-01: mg/dL / 4.008
        ("albumin", "3.5", "g/dL", Decimal("35.0"), "g/L"),  # CA-01: g/dL x 10
        ("calcium_ionised", "1.20", "mmol/L", Decimal("1.200"), "mmol/L"),
    ],
)
def test_lab_units_are_checked_and_converted(
    test: str, value: str, unit: str, stored: Decimal, stored_unit: str
) -> None:
    lab = _lab(PatientFactory(), test, value, unit)
    lab.full_clean()
    lab.save()
    lab.refresh_from_db()
    assert lab.value == stored
    assert lab.unit == stored_unit
    assert (lab.value_entered, lab.unit_entered) == (Decimal(value), unit)  # what was typed is kept


def test_unknown_unit_is_refused_naming_the_field() -> None:
    lab = _lab(PatientFactory(), "25ohd", "30", "mg/L")
    with pytest.raises(ValidationError) as exc:
        lab.full_clean()
    assert list(_errors(exc)) == ["unit_entered"]
    assert "ng/mL" in _errors(exc)["unit_entered"][0]  # says which units fit


@pytest.mark.parametrize(
    ("test", "value", "unit"),
    [
        ("calcium_total", "25", "mmol/L"),
        ("25ohd", "1000", "ng/mL"),
        ("calcium_total", "2.3", "mg/dL"),
        ("albumin", "35", "g/dL"),
    ],
)
def test_value_outside_plausible_range_is_refused_on_value_entered(test: str, value: str, unit: str) -> None:
    lab = _lab(PatientFactory(), test, value, unit)
    with pytest.raises(ValidationError) as exc:
        lab.full_clean()
    assert "value_entered" in _errors(exc)
    assert "plausible" in _errors(exc)["value_entered"][0]


def test_implausible_albumin_with_calcium_is_refused_on_albumin_field() -> None:
    lab = _lab(PatientFactory(), "calcium_total", "2.30", "mmol/L", albumin_g_l=Decimal("3.5"))  # g/dL typed as g/L
    with pytest.raises(ValidationError) as exc:
        lab.full_clean()
    assert "albumin_g_l" in _errors(exc)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("dose_value", {"dose_value": Decimal(600)}),
        ("dose_unit", {"dose_unit": "IU"}),
        ("route", {"route": "IV"}),
        ("lot_number", {"lot_number": ""}),
    ],
)
def test_implausible_dose_is_refused_naming_the_field(field: str, values: dict[str, object]) -> None:
    dose = _dose(TreatmentCourseFactory(), **values)
    with pytest.raises(ValidationError) as exc:
        dose.full_clean()
    assert field in _errors(exc)


def test_patient_weight_outside_range_is_refused_on_weight() -> None:
    patient = PatientFactory.build(care_team=PatientFactory().care_team, weight_kg=Decimal("500"))
    with pytest.raises(ValidationError) as exc:
        patient.full_clean()
    assert "weight_kg" in _errors(exc)


# --- CA-01 corrected calcium -----------------------------------------------------------------


def test_corrected_calcium_uses_albumin_from_the_same_draw() -> None:
    """CA-01: 2.10 + (40 - 30) / 40 = 2.35 mmol/L."""
    lab = _lab(PatientFactory(), "calcium_total", "2.10", "mmol/L", albumin_g_l=Decimal("30"))
    lab.full_clean()
    lab.save()
    lab.refresh_from_db()
    assert lab.corrected_calcium_mmol_l == Decimal("2.350")


def test_corrected_calcium_without_albumin_is_the_measured_value() -> None:
    lab = _lab(PatientFactory(), "calcium_total", "2.10", "mmol/L")
    lab.full_clean()
    assert lab.albumin_g_l is None  # "uncorrected": no albumin to correct with
    assert lab.corrected_calcium_mmol_l == Decimal("2.10")


def test_corrected_calcium_from_mg_dl() -> None:
    lab = _lab(PatientFactory(), "calcium_total", "8.4", "mg/dL", albumin_g_l=Decimal("40"))
    lab.full_clean()
    assert lab.value == Decimal("2.096")
    assert lab.corrected_calcium_mmol_l == Decimal("2.096")


def test_no_corrected_calcium_on_other_tests() -> None:
    lab = _lab(PatientFactory(), "25ohd", "30", "ng/mL")
    lab.full_clean()
    assert lab.corrected_calcium_mmol_l is None


# --- duplicates, voids, deletes --------------------------------------------------------------


def test_second_identical_dose_the_same_day_is_refused_then_allowed_after_void() -> None:
    course = TreatmentCourseFactory()
    first = _dose(course)
    first.full_clean()
    first.save()

    second = _dose(course, lot_number="LOT-2")
    with pytest.raises(ValidationError) as exc, translation.override("en"):
        second.full_clean()
    assert "already recorded" in str(exc.value)
    with pytest.raises(IntegrityError, match=r"(?i)unique"), transaction.atomic():
        _dose(course, given_on=first.given_on).save()  # the database refuses it too, even without full_clean
    assert DoseRecord.objects.filter(patient=course.patient).count() == 1

    first.voided_at = timezone.now()
    first.void_reason = "Saisie sur le mauvais patient"
    first.save(update_fields=["voided_at", "void_reason"])
    again = _dose(course, lot_number="LOT-2")
    again.full_clean()
    again.save()
    assert DoseRecord.objects.filter(patient=course.patient, voided_at__isnull=True).get().lot_number == "LOT-2"


def test_same_day_different_product_is_allowed() -> None:
    course = TreatmentCourseFactory()
    vitd = TreatmentCourseFactory(patient=course.patient, protocol=Protocol.VITAMIN_D, indication="osteoporosis")
    dose = _dose(course)
    dose.full_clean()
    dose.save()
    vitamin = _dose(
        vitd,
        product="cholecalciferol",
        dose_value=Decimal(50000),
        dose_unit="IU",
        route="PO",
        injection_site="",
        lot_number="",
        source=DoseRecord.Source.SELF_REPORTED,
    )
    vitamin.full_clean()


@pytest.mark.parametrize(
    "factory",
    [DoseRecordFactory, LabResultFactory, DentalEventFactory, TreatmentCourseFactory],
)
def test_delete_of_a_medical_record_is_refused(factory: type) -> None:
    record = factory()
    with pytest.raises(ValidationError, match="voided"):
        record.delete()
    assert type(record).objects.filter(pk=record.pk).exists()


def test_bad_input_changes_nothing_already_stored() -> None:
    course = TreatmentCourseFactory()
    dose = _dose(course)
    dose.full_clean()
    dose.save()
    lab = _lab(course.patient, "calcium_total", "2.30", "mmol/L", albumin_g_l=Decimal("38"))
    lab.full_clean()
    lab.save()
    before = {
        "doses": DoseRecord.objects.count(),
        "labs": LabResult.objects.count(),
        "dose": model_to_dict(DoseRecord.objects.get(pk=dose.pk)),
        "lab": model_to_dict(LabResult.objects.get(pk=lab.pk)),
    }

    attempts = []
    bad_dose = DoseRecord.objects.get(pk=dose.pk)
    bad_dose.dose_value = Decimal(600)
    bad_dose.given_at = timezone.now() + timedelta(days=2)
    attempts.append(bad_dose)
    bad_lab = LabResult.objects.get(pk=lab.pk)
    bad_lab.value_entered, bad_lab.unit_entered = Decimal("99"), "mmol/L"
    attempts.append(bad_lab)
    attempts.append(_lab(course.patient, "25ohd", "30", "furlongs"))
    attempts.append(_dose(course))  # duplicate of the stored dose
    for attempt in attempts:
        with pytest.raises(ValidationError):
            attempt.full_clean()
            attempt.save()

    assert DoseRecord.objects.count() == before["doses"]
    assert LabResult.objects.count() == before["labs"]
    assert model_to_dict(DoseRecord.objects.get(pk=dose.pk)) == before["dose"]
    assert model_to_dict(LabResult.objects.get(pk=lab.pk)) == before["lab"]


# --- courses ---------------------------------------------------------------------------------


def test_course_stop_needs_a_reason_and_cannot_precede_start() -> None:
    course = TreatmentCourseFactory()
    course.stop_date = course.start_date - timedelta(days=1)
    with pytest.raises(ValidationError) as exc:
        course.full_clean()
    assert {"stop_date", "stop_reason"} <= set(_errors(exc))


def test_consolidation_only_after_denosumab_60() -> None:
    course = TreatmentCourseFactory(protocol=Protocol.ZOLEDRONIC_ONCO, indication="oncology")
    course.consolidation = Protocol.ZOLEDRONIC_OP
    with pytest.raises(ValidationError) as exc:
        course.full_clean()
    assert "consolidation" in _errors(exc)


# --- factories -------------------------------------------------------------------------------


def test_factories_build_without_a_database(django_assert_num_queries: object) -> None:
    with django_assert_num_queries(0):  # type: ignore[operator]
        dose = DoseRecordFactory.build(days_ago=5)
        lab = LabResultFactory.build(value_entered=Decimal("9.2"), unit_entered="mg/dL", albumin_g_l=Decimal("30"))
    assert dose.pk is None and dose.given_on == _today() - timedelta(days=5)
    assert lab.value == Decimal("2.295")
    assert lab.corrected_calcium_mmol_l == Decimal("2.545")
