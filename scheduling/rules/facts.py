"""Plain, frozen inputs of the rules: a patient's facts on local dates (TIME-01 done upstream)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any, TypeVar

__all__ = [
    "COMEDICATION_CLASSES",
    "DENTAL_EVENTS",
    "LAB_UNITS",
    "PREDISPOSITIONS",
    "RESPONSES",
    "RISK_FACTORS",
    "Comedication",
    "Course",
    "DentalEvent",
    "Dose",
    "Lab",
    "PatientFacts",
    "PlanInput",
    "Reevaluation",
    "Stop",
    "positional",
]

_T = TypeVar("_T")

# RISK-01 exposures recorded on the patient.
RISK_FACTORS = ("tobacco", "alcohol", "head_neck_radiotherapy", "craniofacial_irradiation")
# CA-RISK-01 predispositions to hypocalcaemia.
PREDISPOSITIONS = (
    "hypoparathyroidism",
    "thyroid_surgery",
    "parathyroid_surgery",
    "malabsorption",
    "small_bowel_excision",
    "calcium_lowering_drug",
)
# ZOL-04 oncological response values.
RESPONSES = ("complete", "good", "oligometastatic", "partial", "stable", "progression")
DENTAL_EVENTS = (
    "exam",
    "panoramic_xray",
    "extraction",
    "clearance",
    "exposed_bone",
    "onj_treatment_start",
    "exposed_bone_persisting",
)
COMEDICATION_CLASSES = (
    "glucocorticoid",
    "antiangiogenic",
    "biologic",
    "immunosuppressant",
    "calcium_lowering",
    "other",
)
# Accepted units per lab test; the first is the canonical unit the rules compute in.
LAB_UNITS: dict[str, tuple[str, ...]] = {
    "calcium_total": ("mmol/L", "mg/dL"),
    "albumin": ("g/L", "g/dL"),
    "calcium_ionised": ("mmol/L", "mg/dL"),
    "25ohd": ("ng/mL", "nmol/L"),
    "creatinine": ("umol/L", "µmol/L", "mg/dL"),
    "egfr": ("mL/min/1.73m2", "mL/min/1.73 m2", "mL/min"),
    "crcl": ("mL/min",),
    "ctx": ("ng/mL", "pg/mL"),
    "phosphate": ("mmol/L", "mg/dL"),
    "magnesium": ("mmol/L", "mg/dL"),
    "pth": ("pg/mL", "ng/L", "pmol/L"),
}


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """Who the patient is; renal values without a date are the current known values (REN-02)."""

    birth_date: date
    sex: str  # "F" or "M"
    timezone: str = "Europe/Paris"
    egfr_ml_min: float | None = None
    crcl_ml_min: float | None = None
    weight_kg: float | None = None
    dialysis: bool = False
    risk_factors: tuple[str, ...] = ()
    predispositions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stop:
    """OP-08 / ONC-07 stop decision; ``consolidation`` is the follow-on protocol (CONS-01/03)."""

    date: date
    consolidation: str | None = None


@dataclass(frozen=True, slots=True)
class Course:
    """A treatment course on one protocol. ``key`` is a stable identity (database pk, …)."""

    key: str
    protocol: str
    start_date: date
    stop: Stop | None = None
    response: str | None = None  # ZOL-04
    requested_interval_months: int | None = None  # ONC-03: a spacing request, refused for Xgeva


@dataclass(frozen=True, slots=True)
class Dose:
    """An administration recorded in the booklet, on its local date."""

    key: str
    protocol: str
    given_on: date
    course_key: str | None = None


@dataclass(frozen=True, slots=True)
class Lab:
    """A lab result, ``value`` in ``unit``; ``ref_low``/``ref_high`` override the range (CA-02)."""

    test: str
    value: float
    unit: str
    date: date
    ref_low: float | None = None
    ref_high: float | None = None


@dataclass(frozen=True, slots=True)
class DentalEvent:
    event: str
    date: date


@dataclass(frozen=True, slots=True)
class Comedication:
    name: str
    drug_class: str | None
    mg_per_day: float | None
    start_date: date
    stop_date: date | None = None


@dataclass(frozen=True, slots=True)
class Reevaluation:
    """A completed re-evaluation (OP-06 repeats 24 months after it)."""

    date: date
    course_key: str | None = None


@dataclass(frozen=True, slots=True)
class PlanInput:
    patient: PatientFacts
    courses: tuple[Course, ...] = ()
    doses: tuple[Dose, ...] = ()
    labs: tuple[Lab, ...] = ()
    dental: tuple[DentalEvent, ...] = ()
    comedications: tuple[Comedication, ...] = ()
    reevaluations: tuple[Reevaluation, ...] = field(default=())


def positional(cls: type[_T]) -> Callable[..., _T]:
    """A constructor for the frozen, slotted value class ``cls`` taking every field, in order.

    It gives the value ``cls(*values)`` gives, without the frozen ``__init__``'s
    ``object.__setattr__`` per field: each field is set through its slot directly. For classes
    without ``__post_init__`` built by the thousand (ten years of facts read per re-plan, the
    flags of every plan): 1.6 µs for a lab against 3.4 µs. Checked against ``cls`` in
    tests/scheduling/test_rules_values.py.
    """
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__ that this constructor would skip")
    if hasattr(cls, "__mypyc_attrs__"):
        # Compiled (scheduling/rules/_native.py): its own constructor is native code already, and
        # ``object.__new__`` refuses a compiled class.
        return cls
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]  # a dataclass, checked by fields()
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    scope.update({f"set_{name}": cls.__dict__[name].__set__ for name in names})
    lines = [f"def build({', '.join(names)}):", "    obj = new(cls)"]
    lines += [f"    set_{name}(obj, {name})" for name in names]
    lines.append("    return obj")
    exec("\n".join(lines), scope)  # noqa: S102  # the source is made of the class's field names only
    built: Callable[..., _T] = scope["build"]
    built.__qualname__ = built.__name__ = f"positional_{cls.__name__}"
    return built
