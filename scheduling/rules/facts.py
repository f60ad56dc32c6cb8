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

# The value classes built per patient and per item write their ``__init__`` out (``init=False``)
# rather than let ``dataclass`` generate it: mypyc compiles a written one to native code, while a
# generated one stays interpreted, and a frozen one sets each field through ``object.__setattr__``
# (a lab: ~600 ns generated, ~100 ns written, compiled; a 22-field plan item ~900 → ~200 ns).
# The written ``__init__`` takes the fields in order with their defaults, as the generated one
# would (tests/scheduling/test_rules_values.py compares them); ``dataclass`` still gives equality,
# hashing, ``repr`` and, frozen, the refusal to assign.
# ``date`` is also a field name: the ``__init__`` parameters named so are typed through this.
_Date = date

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


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(
        self,
        birth_date: date,
        sex: str,
        timezone: str = "Europe/Paris",
        egfr_ml_min: float | None = None,
        crcl_ml_min: float | None = None,
        weight_kg: float | None = None,
        dialysis: bool = False,
        risk_factors: tuple[str, ...] = (),
        predispositions: tuple[str, ...] = (),
    ) -> None:
        object.__setattr__(self, "birth_date", birth_date)
        object.__setattr__(self, "sex", sex)
        object.__setattr__(self, "timezone", timezone)
        object.__setattr__(self, "egfr_ml_min", egfr_ml_min)
        object.__setattr__(self, "crcl_ml_min", crcl_ml_min)
        object.__setattr__(self, "weight_kg", weight_kg)
        object.__setattr__(self, "dialysis", dialysis)
        object.__setattr__(self, "risk_factors", risk_factors)
        object.__setattr__(self, "predispositions", predispositions)


@dataclass(frozen=True, slots=True, init=False)
class Stop:
    """OP-08 / ONC-07 stop decision; ``consolidation`` is the follow-on protocol (CONS-01/03)."""

    date: date
    consolidation: str | None = None

    def __init__(self, date: _Date, consolidation: str | None = None) -> None:
        object.__setattr__(self, "date", date)
        object.__setattr__(self, "consolidation", consolidation)


@dataclass(frozen=True, slots=True, init=False)
class Course:
    """A treatment course on one protocol. ``key`` is a stable identity (database pk, …)."""

    key: str
    protocol: str
    start_date: date
    stop: Stop | None = None
    response: str | None = None  # ZOL-04
    requested_interval_months: int | None = None  # ONC-03: a spacing request, refused for Xgeva

    def __init__(
        self,
        key: str,
        protocol: str,
        start_date: date,
        stop: Stop | None = None,
        response: str | None = None,
        requested_interval_months: int | None = None,
    ) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "start_date", start_date)
        object.__setattr__(self, "stop", stop)
        object.__setattr__(self, "response", response)
        object.__setattr__(self, "requested_interval_months", requested_interval_months)


@dataclass(frozen=True, slots=True, init=False)
class Dose:
    """An administration recorded in the booklet, on its local date."""

    key: str
    protocol: str
    given_on: date
    course_key: str | None = None

    def __init__(self, key: str, protocol: str, given_on: date, course_key: str | None = None) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "given_on", given_on)
        object.__setattr__(self, "course_key", course_key)


@dataclass(frozen=True, slots=True, init=False)
class Lab:
    """A lab result, ``value`` in ``unit``; ``ref_low``/``ref_high`` override the range (CA-02)."""

    test: str
    value: float
    unit: str
    date: date
    ref_low: float | None = None
    ref_high: float | None = None

    def __init__(
        self,
        test: str,
        value: float,
        unit: str,
        date: _Date,
        ref_low: float | None = None,
        ref_high: float | None = None,
    ) -> None:
        object.__setattr__(self, "test", test)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "date", date)
        object.__setattr__(self, "ref_low", ref_low)
        object.__setattr__(self, "ref_high", ref_high)


@dataclass(frozen=True, slots=True, init=False)
class DentalEvent:
    event: str
    date: date

    def __init__(self, event: str, date: _Date) -> None:
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "date", date)


@dataclass(frozen=True, slots=True, init=False)
class Comedication:
    name: str
    drug_class: str | None
    mg_per_day: float | None
    start_date: date
    stop_date: date | None = None

    def __init__(
        self,
        name: str,
        drug_class: str | None,
        mg_per_day: float | None,
        start_date: date,
        stop_date: date | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "drug_class", drug_class)
        object.__setattr__(self, "mg_per_day", mg_per_day)
        object.__setattr__(self, "start_date", start_date)
        object.__setattr__(self, "stop_date", stop_date)


@dataclass(frozen=True, slots=True, init=False)
class Reevaluation:
    """A completed re-evaluation (OP-06 repeats 24 months after it)."""

    date: date
    course_key: str | None = None

    def __init__(self, date: _Date, course_key: str | None = None) -> None:
        object.__setattr__(self, "date", date)
        object.__setattr__(self, "course_key", course_key)


@dataclass(frozen=True, slots=True, init=False)
class PlanInput:
    patient: PatientFacts
    courses: tuple[Course, ...] = ()
    doses: tuple[Dose, ...] = ()
    labs: tuple[Lab, ...] = ()
    dental: tuple[DentalEvent, ...] = ()
    comedications: tuple[Comedication, ...] = ()
    reevaluations: tuple[Reevaluation, ...] = field(default=())

    def __init__(
        self,
        patient: PatientFacts,
        courses: tuple[Course, ...] = (),
        doses: tuple[Dose, ...] = (),
        labs: tuple[Lab, ...] = (),
        dental: tuple[DentalEvent, ...] = (),
        comedications: tuple[Comedication, ...] = (),
        reevaluations: tuple[Reevaluation, ...] = (),
    ) -> None:
        object.__setattr__(self, "patient", patient)
        object.__setattr__(self, "courses", courses)
        object.__setattr__(self, "doses", doses)
        object.__setattr__(self, "labs", labs)
        object.__setattr__(self, "dental", dental)
        object.__setattr__(self, "comedications", comedications)
        object.__setattr__(self, "reevaluations", reevaluations)


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
