"""Fact rows as the database gives them → the rules' ``PlanInput`` of each patient.

``scheduling.selectors.plan_inputs`` reads the rows (one query per fact table for a batch of
patients) and hands them here. The loops live with the rules so that they are compiled with them
(``_native``): ten years of history is ~40 rows a patient, read for every patient of every
re-plan, and building their values cost as much as the queries did (docs/benchmarks.md).

The rows' shapes are the selector's column lists (``scheduling.selectors._FACT_READS``); numbers
stored as decimals arrive as ``Decimal`` and become floats here. Instants are already local
dates (TIME-01).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from .calendar import add_months
from .config import RulesConfig
from .facts import Comedication, Course, DentalEvent, Dose, Lab, PatientFacts, PlanInput, Stop

__all__ = ["PRODUCT_PROTOCOL_FALLBACK", "dose_protocol", "plan_inputs_from_rows"]

PRODUCT_PROTOCOL_FALLBACK: dict[tuple[str, int], str] = {
    # A dose entered as history without a course still counts for its protocol.
    ("denosumab", 60): "denosumab_op_60mg_q6m",
    ("denosumab", 120): "denosumab_onco_120mg",
    ("zoledronic_acid", 5): "zoledronic_op_5mg",
    ("alendronate", 70): "alendronate_op_70mg_weekly",
}

CourseRow = tuple[int, int, str, date, "date | None", "str | None", "str | None"]
DoseRow = tuple[int, int, "int | None", str, Any, date]
LabRow = tuple[int, str, Any, str, Any, date, Any, Any]
DentalRow = tuple[int, str, date]
ComedicationRow = tuple[int, str, "str | None", Any, date, "date | None"]


def _f(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]  # Decimal | float | int


def dose_protocol(product: str, dose_value: Any) -> str:
    """The protocol of a dose recorded without a course (vitamin D, a one-off infusion)."""
    if product == "cholecalciferol":
        return "vitamin_d_50000iu"
    if product == "zoledronic_acid" and float(dose_value) < 5:
        return "zoledronic_onco_4mg"
    return PRODUCT_PROTOCOL_FALLBACK.get((product, int(dose_value)), "zoledronic_onco_4mg")


def plan_inputs_from_rows(
    patients: Sequence[Any],
    today_by_patient: dict[int, date],
    config: RulesConfig,
    course_rows: Sequence[CourseRow],
    dose_rows: Sequence[DoseRow],
    lab_rows: Sequence[LabRow],
    dental_rows: Sequence[DentalRow],
    comedication_rows: Sequence[ComedicationRow],
) -> dict[int, PlanInput]:
    """The ``PlanInput`` of each of ``patients`` (objects with ``pk``, ``birth_date``, ``sex``,
    ``timezone``, ``weight_kg``, ``dialysis``, ``risk_factors``, ``predispositions``) by pk, from
    their fact rows, each table's rows in the order the rules expect (by date)."""
    courses: dict[int, list[Course]] = {}
    course_protocols: dict[int, str] = {}
    for pk, patient_id, protocol, start_date, stop_date, consolidation, response in course_rows:
        stop = None if stop_date is None else Stop(stop_date, consolidation or None)
        courses.setdefault(patient_id, []).append(Course(str(pk), protocol, start_date, stop, response or None, None))
        course_protocols[pk] = protocol
    doses: dict[int, list[Dose]] = {}
    for pk, patient_id, course_id, product, dose_value, given_on in dose_rows:
        if course_id is not None:
            dose = Dose(str(pk), course_protocols[course_id], given_on, str(course_id))
        else:
            dose = Dose(str(pk), dose_protocol(product, dose_value), given_on, None)
        doses.setdefault(patient_id, []).append(dose)
    labs: dict[int, list[Lab]] = {}
    egfr: dict[int, tuple[date, float]] = {}
    crcl: dict[int, tuple[date, float]] = {}
    for patient_id, test, value, unit, albumin, drawn_on, low, high in lab_rows:
        found = labs.setdefault(patient_id, [])
        number = float(value)
        found.append(Lab(test, number, unit, drawn_on, _f(low), _f(high)))
        if albumin is not None:
            # CA-01: the albumin of the same draw travels as its own lab on the same date.
            found.append(Lab("albumin", float(albumin), "g/L", drawn_on, None, None))
        if test == "egfr":
            egfr[patient_id] = (drawn_on, number)
        elif test == "crcl":
            crcl[patient_id] = (drawn_on, number)
    dental: dict[int, list[DentalEvent]] = {}
    for patient_id, event, day in dental_rows:
        dental.setdefault(patient_id, []).append(DentalEvent(event, day))
    comeds: dict[int, list[Comedication]] = {}
    for patient_id, name, drug_class, mg_per_day, start_date, stop_date in comedication_rows:
        comeds.setdefault(patient_id, []).append(Comedication(name, drug_class, _f(mg_per_day), start_date, stop_date))
    out: dict[int, PlanInput] = {}
    none: tuple[()] = ()
    for patient in patients:
        key: int = patient.pk
        today = today_by_patient[key]
        # REN-02: renal values older than the look-back count as unknown.
        cutoff = add_months(today, -config.renal_lookback_months)
        egfr_value = egfr.get(key)
        crcl_value = crcl.get(key)
        out[key] = PlanInput(
            PatientFacts(
                patient.birth_date,
                patient.sex,
                patient.timezone,
                egfr_value[1] if egfr_value is not None and egfr_value[0] >= cutoff else None,
                crcl_value[1] if crcl_value is not None and crcl_value[0] >= cutoff else None,
                _f(patient.weight_kg),
                patient.dialysis,
                tuple(patient.risk_factors or none),
                tuple(patient.predispositions or none),
            ),
            tuple(courses.get(key, none)),
            tuple(doses.get(key, none)),
            tuple(labs.get(key, none)),
            tuple(dental.get(key, none)),
            tuple(comeds.get(key, none)),
            none,
        )
    return out
