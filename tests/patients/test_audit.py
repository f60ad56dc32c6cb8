"""Audit trail (issue 2, item 5): every create, update and void of medical data, with who, when, what."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from patients.admin import audit_delta
from patients.models import DoseRecord, LabResult, TreatmentCourse
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


def _save(instance: object, user: object, **kwargs: object) -> None:
    instance._history_user = user  # type: ignore[attr-defined]
    instance.save(**kwargs)  # type: ignore[attr-defined]


def _void(record: DoseRecord | LabResult | TreatmentCourse, user: object, reason: str) -> None:
    """The same steps as patients.services._void."""
    record.voided_at = timezone.now()
    record.voided_by = user  # type: ignore[assignment]
    record.void_reason = reason
    _save(record, user, update_fields=["voided_at", "voided_by", "void_reason"])


def test_create_update_and_void_of_a_dose_are_recorded_with_who_and_what() -> None:
    nurse = StaffUserFactory(email="claire@example.test")
    physician = StaffUserFactory(email="julien@example.test", role="physician")
    dose = DoseRecordFactory.build(course=TreatmentCourseFactory())
    _save(dose, nurse)

    dose.lot_number = "LOT-CORRIGE"
    _save(dose, physician)
    _void(dose, nurse, "Saisie sur le mauvais patient")

    history = list(dose.history.order_by("history_date", "history_id"))
    assert [h.history_type for h in history] == ["+", "~", "~"]
    assert [h.history_user for h in history] == [nurse, physician, nurse]
    assert all(h.history_date <= timezone.now() for h in history)

    update = history[1].diff_against(history[0])
    assert update.changed_fields == ["lot_number"]
    assert (update.changes[0].old, update.changes[0].new) == ("LOT-A1234", "LOT-CORRIGE")

    void = audit_delta(history[2], history[1])  # what the admin's history page shows
    assert set(void.changed_fields) == {"voided_at", "voided_by", "void_reason"}
    assert history[2].void_reason == "Saisie sur le mauvais patient"
    assert history[2].voided_by_id == nurse.pk
    assert DoseRecord.objects.filter(pk=dose.pk).exists()  # voided, never deleted


@pytest.mark.parametrize(
    "factory",
    [PatientFactory, TreatmentCourseFactory, LabResultFactory, DentalEventFactory],
)
def test_every_medical_model_keeps_history_of_creates_and_updates(factory: type) -> None:
    nurse = StaffUserFactory()
    parent = {"care_team": CareTeamFactory()} if factory is PatientFactory else {"patient": PatientFactory()}
    record = factory.build(**parent)
    _save(record, nurse)
    field = "first_name" if factory is PatientFactory else "recorded_by"
    setattr(record, field, "Jeanne" if factory is PatientFactory else nurse)
    _save(record, nurse)

    history = list(record.history.order_by("history_date", "history_id"))
    assert [h.history_type for h in history] == ["+", "~"]
    assert history[-1].history_user == nurse
    changed = history[1].diff_against(history[0]).changed_fields
    assert changed == [field]


def test_lab_history_keeps_the_value_as_entered_and_normalised() -> None:
    nurse = StaffUserFactory()
    lab = LabResultFactory.build(
        patient=PatientFactory(), test="25ohd", value_entered=Decimal("75"), unit_entered="nmol/L"
    )
    lab.full_clean()
    _save(lab, nurse)
    record = lab.history.get()
    assert (record.value_entered, record.unit_entered, record.value, record.unit) == (
        Decimal("75.000"),
        "nmol/L",
        Decimal("30.000"),
        "ng/mL",
    )
