"""Writes to the booklet. Every service validates, writes, audits and re-plans in one transaction.

Names follow ``<entity>_<action>``; arguments are keyword-only. A fact that changes the plan
calls ``scheduling.services.plan_sync`` inside the same ``transaction.atomic`` block, so the
stored plan never disagrees with the facts it came from.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from backend.errors import CarnetError
from patients.models import (
    PROTOCOL_INDICATION,
    Comedication,
    DentalEvent,
    DoseRecord,
    LabResult,
    MedicalRecord,
    Patient,
    Protocol,
    TreatmentCourse,
    User,
)


class BookletValidationError(CarnetError):
    """Bad input for a booklet entry; ``errors`` maps each field at fault to its messages."""

    code = "validation_error"

    def __init__(self, errors: dict[str, list[str]]) -> None:
        field, messages = next(iter(errors.items()))
        super().__init__(messages[0], field=field)
        self.errors = errors


def _validate(instance: Any, *, exclude: list[str] | None = None) -> None:
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as exc:
        raise BookletValidationError(_field_errors(exc)) from exc


def _field_errors(exc: ValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if f == "__all__" else f): [str(m) for e in errs for m in e.messages]
            for f, errs in exc.error_dict.items()
        }
    return {"non_field_errors": [str(m) for m in exc.messages]}


def _save(instance: MedicalRecord | Patient, *, by: User | None, **kwargs: Any) -> None:
    instance._history_user = by  # type: ignore[union-attr]  # simple-history reads this attribute
    instance.save(**kwargs)


def _replan(patient: Patient) -> None:
    from scheduling.services import plan_sync

    plan_sync(patient=patient)


# --- patients -------------------------------------------------------------------------------

PATIENT_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "birth_date",
        "sex",
        "language",
        "timezone",
        "email",
        "phone",
        "consent_email",
        "consent_push",
        "consent_sms",
        "weight_kg",
        "dialysis",
        "risk_factors",
        "predispositions",
    }
)
# Facts that change what the rules compute (birth date: age ≥ 75; dialysis, weight: renal rules).
PLANNING_FIELDS = frozenset(
    {
        "birth_date",
        "timezone",
        "weight_kg",
        "dialysis",
        "risk_factors",
        "predispositions",
        "sex",
        # Not clinical, but they decide which reminders exist and where they go (the outbox).
        "consent_email",
        "consent_push",
        "consent_sms",
        "email",
        "language",
    }
)


@transaction.atomic
def patient_create(*, care_team: Any, by: User | None, user: User | None = None, **fields: Any) -> Patient:
    unknown = set(fields) - PATIENT_FIELDS
    if unknown:
        raise CarnetError(f"Unknown field {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    patient = Patient(care_team=care_team, user=user, **fields)
    _validate(patient)
    _save(patient, by=by)
    _replan(patient)
    return patient


@transaction.atomic
def patient_update(*, patient: Patient, by: User | None, **fields: Any) -> Patient:
    unknown = set(fields) - PATIENT_FIELDS
    if unknown:
        raise CarnetError(f"Unknown field {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    locked = Patient.objects.select_for_update().get(pk=patient.pk)
    changed = {name for name, value in fields.items() if getattr(locked, name) != value}
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, fields[name])
    _validate(locked)
    _save(locked, by=by)
    if changed & PLANNING_FIELDS:
        _replan(locked)
    return locked


# --- courses --------------------------------------------------------------------------------


@transaction.atomic
def course_start(
    *,
    patient: Patient,
    protocol: str,
    start_date: date,
    by: User | None,
    prescriber: User | None = None,
    planned_duration_months: int | None = None,
    response: str = "",
) -> TreatmentCourse:
    if protocol not in Protocol.values:
        raise CarnetError(f"Unknown protocol {protocol!r}.", field="protocol", code="unknown_protocol")
    indication = PROTOCOL_INDICATION.get(Protocol(protocol))
    course = TreatmentCourse(
        patient=patient,
        protocol=protocol,
        indication=indication or patient_indication(patient),
        start_date=start_date,
        prescriber=prescriber,
        planned_duration_months=planned_duration_months,
        response=response,
        recorded_by=by,
    )
    _validate(course)
    _save(course, by=by)
    _replan(patient)
    return course


def patient_indication(patient: Patient) -> str:
    """Vitamin D follows the patient's antiresorptive indication (osteoporosis by default)."""
    active = patient.courses.filter(voided_at__isnull=True, stop_date__isnull=True).exclude(protocol=Protocol.VITAMIN_D)
    first = active.order_by("start_date").first()
    return first.indication if first else "osteoporosis"


@transaction.atomic
def course_stop(
    *,
    course: TreatmentCourse,
    stop_date: date,
    reason: str,
    by: User | None,
    consolidation: str = "",
) -> TreatmentCourse:
    """OP-08 / ONC-07: stopping denosumab opens the consolidation in the same transaction."""
    locked = TreatmentCourse.objects.select_for_update().get(pk=course.pk)
    if locked.stop_date is not None:
        raise CarnetError("This course is already stopped.", field="stop_date", code="already_stopped")
    if locked.voided_at is not None:
        raise CarnetError("This course was voided.", field="course", code="voided")
    if locked.protocol == Protocol.DENOSUMAB_OP and not consolidation:
        consolidation = Protocol.ZOLEDRONIC_OP  # CONS-01: zoledronic acid is the default follow-on.
    locked.stop_date = stop_date
    locked.stop_reason = reason
    locked.consolidation = consolidation
    _validate(locked)
    _save(locked, by=by)
    _replan(locked.patient)
    return locked


# --- doses ----------------------------------------------------------------------------------


@transaction.atomic
def dose_record(
    *,
    patient: Patient,
    product: str,
    dose_value: Decimal,
    dose_unit: str,
    route: str,
    given_at: datetime,
    by: User | None,
    course: TreatmentCourse | None = None,
    injection_site: str = "",
    lot_number: str = "",
    source: str = DoseRecord.Source.STAFF,
    given_by: User | None = None,
    override_reason: str = "",
) -> DoseRecord:
    """Record a dose. A dose that a gate blocks needs an emergency override with a reason."""
    if timezone.is_naive(given_at):
        raise CarnetError("given_at needs a time zone offset.", field="given_at")
    dose = DoseRecord(
        patient=patient,
        course=course,
        product=product,
        dose_value=dose_value,
        dose_unit=dose_unit,
        route=route,
        given_at=given_at,
        injection_site=injection_site,
        lot_number=lot_number.strip(),
        source=source,
        given_by=given_by,
        recorded_by=by,
        override_reason=override_reason.strip(),
    )
    _validate(dose)
    if course is not None and source != DoseRecord.Source.HISTORY:
        from scheduling.services import dose_gates_check

        dose.override_flags = dose_gates_check(
            patient=patient, course=course, on=dose.given_on, override_reason=dose.override_reason
        )
    try:
        with transaction.atomic():
            _save(dose, by=by)
    except IntegrityError as exc:
        raise BookletValidationError({"given_at": ["This dose is already recorded for that day."]}) from exc
    _replan(patient)
    return dose


def _void(record: MedicalRecord, *, reason: str, by: User | None) -> None:
    if not reason.strip():
        raise CarnetError("Give the reason for voiding this entry.", field="reason")
    if record.voided_at is not None:
        raise CarnetError("This entry is already voided.", field="reason", code="already_voided")
    record.voided_at = timezone.now()
    record.voided_by = by
    record.void_reason = reason.strip()
    _save(record, by=by, update_fields=["voided_at", "voided_by", "void_reason"])


_R = TypeVar("_R", DoseRecord, TreatmentCourse, LabResult, DentalEvent, Comedication)


def _locked(record: _R) -> _R:
    model = type(record)
    return model.objects.select_for_update(of=("self",)).select_related("patient").get(pk=record.pk)


def _void_and_replan(record: _R, *, reason: str, by: User | None) -> _R:
    """Void a booklet entry under a row lock, audit it and re-plan its patient."""
    locked = _locked(record)
    _void(locked, reason=reason, by=by)
    _replan(locked.patient)
    return locked


@transaction.atomic
def dose_void(*, dose: DoseRecord, reason: str, by: User | None) -> DoseRecord:
    return _void_and_replan(dose, reason=reason, by=by)


@transaction.atomic
def course_void(*, course: TreatmentCourse, reason: str, by: User | None) -> TreatmentCourse:
    locked = _locked(course)
    if locked.doses.filter(voided_at__isnull=True).exists():
        raise CarnetError("Void this course's doses first.", field="course", code="has_doses")
    _void(locked, reason=reason, by=by)
    _replan(locked.patient)
    return locked


# --- labs, dental events, co-medications ----------------------------------------------------


@transaction.atomic
def lab_add(
    *,
    patient: Patient,
    test: str,
    value: Decimal,
    unit: str,
    drawn_at: datetime,
    by: User | None,
    albumin_g_l: Decimal | None = None,
    reference_low: Decimal | None = None,
    reference_high: Decimal | None = None,
) -> LabResult:
    if timezone.is_naive(drawn_at):
        raise CarnetError("drawn_at needs a time zone offset.", field="drawn_at")
    lab = LabResult(
        patient=patient,
        test=test,
        value_entered=value,
        unit_entered=unit,
        albumin_g_l=albumin_g_l,
        reference_low=reference_low,
        reference_high=reference_high,
        drawn_at=drawn_at,
        recorded_by=by,
    )
    _validate(lab, exclude=["value", "unit", "drawn_on"])
    _save(lab, by=by)
    _replan(patient)
    return lab


@transaction.atomic
def lab_void(*, lab: LabResult, reason: str, by: User | None) -> LabResult:
    return _void_and_replan(lab, reason=reason, by=by)


@transaction.atomic
def dental_event_add(
    *, patient: Patient, event: str, on: date, by: User | None, dentist: str = "", notes: str = ""
) -> DentalEvent:
    dental = DentalEvent(patient=patient, event=event, date=on, dentist=dentist, notes=notes, recorded_by=by)
    _validate(dental)
    _save(dental, by=by)
    _replan(patient)
    return dental


@transaction.atomic
def dental_event_void(*, dental: DentalEvent, reason: str, by: User | None) -> DentalEvent:
    return _void_and_replan(dental, reason=reason, by=by)


@transaction.atomic
def comedication_add(
    *,
    patient: Patient,
    name: str,
    drug_class: str,
    start_date: date,
    by: User | None,
    mg_per_day: Decimal | None = None,
    stop_date: date | None = None,
) -> Comedication:
    comed = Comedication(
        patient=patient,
        name=name,
        drug_class=drug_class,
        start_date=start_date,
        mg_per_day=mg_per_day,
        stop_date=stop_date,
        recorded_by=by,
    )
    _validate(comed)
    _save(comed, by=by)
    _replan(patient)
    return comed


@transaction.atomic
def comedication_void(*, comedication: Comedication, reason: str, by: User | None) -> Comedication:
    return _void_and_replan(comedication, reason=reason, by=by)
