"""Lab arithmetic: calcium (CA-01, CA-02, CTCAE grades for CA-03/CA-04), vitamin D (VITD-01/02),
renal function (REN-01, REN-02) and the zoledronic acid dose bands (ZOL-02, ZOL-03, CONS-04).

Seed decision (CA-01): the corrected calcium uses the seed's factor (40 - albumin g/L) / 40, i.e.
0.025 mmol/L per g/L ([003] l.316), not the 0.02 of many English sources.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from .calendar import add_months, age_on
from .config import RulesConfig
from .facts import LAB_UNITS, Lab, PatientFacts

__all__ = [
    "CA_MG_DL_PER_MMOL_L",
    "CREATININE_UMOL_PER_MG_DL",
    "CalciumResult",
    "LabSummary",
    "RenalFunction",
    "calcium_status",
    "cockcroft_gault",
    "corrected_calcium",
    "crcl_on",
    "ctcae_grade",
    "latest",
    "latest_calcium",
    "renal_for_denosumab",
    "summarise",
    "to_canonical",
    "vitd_class",
    "vitd_loading_doses",
    "vitd_ng_ml",
    "zoledronic_dose_mg",
]

# ``date`` is also a field name (CalciumResult): its ``__init__`` parameter is typed through this.
_Date = date

CA_MG_DL_PER_MMOL_L = 4.008  # CA-01: mg/dL ÷ 4.008 -> mmol/L
CREATININE_UMOL_PER_MG_DL = 88.4
VITD_NMOL_PER_NG = 2.5  # VITD-01: nmol/L = ng/mL x 2.5 (the seed's convention)
HYPERCALCAEMIC_CRISIS_MMOL_L = 3.5  # CA-04, [003] decoded
CTX_EARLY_SECOND_ZOL_NG_ML = 0.300  # CONS-02, R9


def to_canonical(test: str, value: float, unit: str) -> float:
    """Convert ``value`` to the canonical unit of ``test`` (first unit of ``LAB_UNITS``)."""
    if unit not in LAB_UNITS.get(test, ()):
        raise ValueError(f"unit {unit!r} does not fit test {test!r}")
    if test in ("calcium_total", "calcium_ionised") and unit == "mg/dL":
        return value / CA_MG_DL_PER_MMOL_L
    if test == "albumin" and unit == "g/dL":
        return value * 10
    if test == "25ohd" and unit == "nmol/L":
        return value / VITD_NMOL_PER_NG
    if test == "creatinine" and unit == "mg/dL":
        return value * CREATININE_UMOL_PER_MG_DL
    if test == "ctx" and unit == "pg/mL":
        return value / 1000
    if test == "phosphate" and unit == "mg/dL":
        return value / 3.097
    if test == "magnesium" and unit == "mg/dL":
        return value / 2.431
    if test == "pth" and unit == "pmol/L":
        return value * 9.43
    return value


def latest(labs: Iterable[Lab], test: str, *, on: date, since: date | None = None) -> Lab | None:
    """The most recent ``test`` result drawn on or before ``on`` (and on/after ``since``)."""
    found = [lab for lab in labs if lab.test == test and lab.date <= on and (since is None or lab.date >= since)]
    return max(found, key=lambda lab: lab.date) if found else None


# --- calcium -------------------------------------------------------------------------------------


def corrected_calcium(calcium_mmol_l: float, albumin_g_l: float | None) -> float:
    """CA-01: measured Ca + (40 - albumin g/L) / 40; without albumin, the measured value."""
    if albumin_g_l is None:
        return calcium_mmol_l
    return calcium_mmol_l + (40 - albumin_g_l) / 40


def ctcae_grade(value: float, low: float, high: float) -> int:
    """CTCAE grade (R14): negative for hypo-, positive for hyper-, 0 when in range.

    Hypo: G1 < LLN-2.0, G2 < 2.0-1.75, G3 < 1.75-1.5, G4 < 1.5. Hyper: G1 > ULN-2.9,
    G2 > 2.9-3.1, G3 > 3.1-3.4, G4 > 3.4 mmol/L.
    """
    if value < low:
        if value >= 2.0:
            return -1
        if value >= 1.75:
            return -2
        return -3 if value >= 1.5 else -4
    if value > high:
        if value <= 2.9:
            return 1
        if value <= 3.1:
            return 2
        return 3 if value <= 3.4 else 4
    return 0


@dataclass(frozen=True, slots=True, init=False)
class CalciumResult:
    value_mmol_l: float  # corrected when ``corrected`` (CA-01), never rounded (CA-02)
    corrected: bool
    date: date
    low: float
    high: float

    def __init__(self, value_mmol_l: float, corrected: bool, date: _Date, low: float, high: float) -> None:
        object.__setattr__(self, "value_mmol_l", value_mmol_l)
        object.__setattr__(self, "corrected", corrected)
        object.__setattr__(self, "date", date)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def status(self) -> str:
        return calcium_status(self.value_mmol_l, self.low, self.high)

    @property
    def grade(self) -> int:
        return ctcae_grade(self.value_mmol_l, self.low, self.high)


def calcium_status(value: float, low: float, high: float) -> str:
    """CA-02: ``low`` / ``normal`` / ``high`` on the unrounded value."""
    if value < low:
        return "low"
    return "high" if value > high else "normal"


def latest_calcium(
    labs: Iterable[Lab], *, on: date, config: RulesConfig, since: date | None = None
) -> CalciumResult | None:
    """The latest total calcium (≤ ``on``), corrected with the albumin of the same draw date."""
    labs = tuple(labs)
    lab = latest(labs, "calcium_total", on=on, since=since)
    if lab is None:
        return None
    albumin = next(
        (a for a in labs if a.test == "albumin" and a.date == lab.date),
        None,
    )
    albumin_g_l = to_canonical("albumin", albumin.value, albumin.unit) if albumin else None
    value = corrected_calcium(to_canonical(lab.test, lab.value, lab.unit), albumin_g_l)
    low = lab.ref_low if lab.ref_low is not None else config.calcium_low_mmol_l
    high = lab.ref_high if lab.ref_high is not None else config.calcium_high_mmol_l
    if lab.unit == "mg/dL":  # a lab range is given in the lab's unit
        low = low / CA_MG_DL_PER_MMOL_L if lab.ref_low is not None else low
        high = high / CA_MG_DL_PER_MMOL_L if lab.ref_high is not None else high
    return CalciumResult(value, albumin_g_l is not None, lab.date, low, high)


# --- vitamin D -----------------------------------------------------------------------------------


def vitd_ng_ml(lab: Lab) -> float:
    return to_canonical("25ohd", lab.value, lab.unit)


def vitd_class(ng_ml: float) -> str:
    """VITD-01 (Tableau 1): carence < 10; insuffisance 10 to < 30; taux_recommandes 30-70;
    au_dessus_recommande > 70-150 (not named in the seed); intoxication_possible > 150."""
    if ng_ml < 10:
        return "carence"
    if ng_ml < 30:
        return "insuffisance"
    if ng_ml <= 70:
        return "taux_recommandes"
    return "au_dessus_recommande" if ng_ml <= 150 else "intoxication_possible"


def vitd_loading_doses(ng_ml: float) -> int:
    """VITD-02 (correction scheme): < 20 ng/mL -> 8 weekly doses; 20 to < 30 -> 4; else 0.

    Seed decision: "carence" is < 10 in Tableau 1 but < 20 in the scheme; the class comes from
    Tableau 1 (VITD-01) and the dose count from the scheme, so 12 ng/mL is insuffisance + 8 doses.
    """
    if ng_ml < 20:
        return 8
    return 4 if ng_ml < 30 else 0


# --- renal function ------------------------------------------------------------------------------


def cockcroft_gault(
    *, age_years: int, weight_kg: float, creatinine_umol_l: float, sex: str, unit: str = "umol/L"
) -> float:
    """REN-01: Cockcroft-Gault CrCl (mL/min), actual body weight, never rounded.

    mg/dL: (140 - age) x weight / (72 x Scr) x 0.85 if female.
    µmol/L: (140 - age) x weight x k / Scr, k = 1.23 (M) or 1.04 (F).
    ``creatinine_umol_l`` is in µmol/L; ``unit`` says which published form to use.
    """
    if unit == "mg/dL":
        scr = creatinine_umol_l / CREATININE_UMOL_PER_MG_DL
        crcl = (140 - age_years) * weight_kg / (72 * scr)
        return crcl * 0.85 if sex == "F" else crcl
    k = 1.04 if sex == "F" else 1.23
    return (140 - age_years) * weight_kg * k / creatinine_umol_l


def crcl_on(patient: PatientFacts, labs: Iterable[Lab], *, on: date, config: RulesConfig) -> float | None:
    """Creatinine clearance for zoledronic acid (REN-01): the latest dated value within the
    lookback (a ``crcl`` result or Cockcroft-Gault from a creatinine and the weight), else the
    patient's current ``crcl_ml_min``."""
    labs = tuple(labs)
    since = add_months(on, -config.renal_lookback_months)
    candidates: list[tuple[date, float]] = []
    crcl = latest(labs, "crcl", on=on, since=since)
    if crcl is not None:
        candidates.append((crcl.date, crcl.value))
    creat = latest(labs, "creatinine", on=on, since=since)
    if creat is not None and patient.weight_kg is not None:
        value = cockcroft_gault(
            age_years=age_on(patient.birth_date, creat.date, leap_birthday=config.leap_birthday),
            weight_kg=patient.weight_kg,
            creatinine_umol_l=to_canonical("creatinine", creat.value, creat.unit),
            sex=patient.sex,
            unit="mg/dL" if creat.unit == "mg/dL" else "umol/L",
        )
        candidates.append((creat.date, value))
    if candidates:
        return max(candidates, key=lambda c: c[0])[1]
    return patient.crcl_ml_min


@dataclass(frozen=True, slots=True, init=False)
class RenalFunction:
    """REN-02: eGFR first, then CrCl; ``value`` None means unknown."""

    value: float | None
    source: str  # egfr | crcl | unknown
    dialysis: bool

    def __init__(self, value: float | None, source: str, dialysis: bool) -> None:
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "dialysis", dialysis)

    @property
    def known(self) -> bool:
        return self.value is not None


def renal_for_denosumab(patient: PatientFacts, labs: Iterable[Lab], *, on: date, config: RulesConfig) -> RenalFunction:
    """REN-02: lab eGFR (last 12 months), else the patient's eGFR, else CrCl; else unknown."""
    labs = tuple(labs)
    since = add_months(on, -config.renal_lookback_months)
    egfr = latest(labs, "egfr", on=on, since=since)
    if egfr is not None:
        return RenalFunction(egfr.value, "egfr", patient.dialysis)
    if patient.egfr_ml_min is not None:
        return RenalFunction(patient.egfr_ml_min, "egfr", patient.dialysis)
    crcl = crcl_on(patient, labs, on=on, config=config)
    if crcl is not None:
        return RenalFunction(crcl, "crcl", patient.dialysis)
    return RenalFunction(None, "unknown", patient.dialysis)


def zoledronic_dose_mg(crcl_ml_min: float) -> float | None:
    """ZOL-02 continuous bands on the unrounded CrCl (P10); None = contraindicated (ZOL-03).

    > 60 -> 4.0; 50 ≤ CrCl ≤ 60 -> 3.5; 40 ≤ CrCl < 50 -> 3.3; 30 ≤ CrCl < 40 -> 3.0; < 30 -> None.
    So 39.92 stays in the 3.0 mg band (no rounding to 40).
    """
    if crcl_ml_min > 60:
        return 4.0
    if crcl_ml_min >= 50:
        return 3.5
    if crcl_ml_min >= 40:
        return 3.3
    return 3.0 if crcl_ml_min >= 30 else None


# --- summary -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class LabSummary:
    corrected_calcium_mmol_l: float | None
    calcium_corrected: bool
    calcium_status: str | None
    calcium_grade: int | None
    calcium_date: date | None
    vitd_ng_ml: float | None
    vitd_class: str | None
    vitd_date: date | None
    crcl_ml_min: float | None
    egfr_ml_min: float | None
    renal_source: str
    zoledronic_dose_mg: float | None

    def __init__(
        self,
        corrected_calcium_mmol_l: float | None,
        calcium_corrected: bool,
        calcium_status: str | None,
        calcium_grade: int | None,
        calcium_date: date | None,
        vitd_ng_ml: float | None,
        vitd_class: str | None,
        vitd_date: date | None,
        crcl_ml_min: float | None,
        egfr_ml_min: float | None,
        renal_source: str,
        zoledronic_dose_mg: float | None,
    ) -> None:
        object.__setattr__(self, "corrected_calcium_mmol_l", corrected_calcium_mmol_l)
        object.__setattr__(self, "calcium_corrected", calcium_corrected)
        object.__setattr__(self, "calcium_status", calcium_status)
        object.__setattr__(self, "calcium_grade", calcium_grade)
        object.__setattr__(self, "calcium_date", calcium_date)
        object.__setattr__(self, "vitd_ng_ml", vitd_ng_ml)
        object.__setattr__(self, "vitd_class", vitd_class)
        object.__setattr__(self, "vitd_date", vitd_date)
        object.__setattr__(self, "crcl_ml_min", crcl_ml_min)
        object.__setattr__(self, "egfr_ml_min", egfr_ml_min)
        object.__setattr__(self, "renal_source", renal_source)
        object.__setattr__(self, "zoledronic_dose_mg", zoledronic_dose_mg)


def summarise(patient: PatientFacts, labs: Iterable[Lab], *, on: date, config: RulesConfig) -> LabSummary:
    labs = tuple(labs)
    ca = latest_calcium(labs, on=on, config=config)
    vd = latest(labs, "25ohd", on=on)
    crcl = crcl_on(patient, labs, on=on, config=config)
    renal = renal_for_denosumab(patient, labs, on=on, config=config)
    vd_value = vitd_ng_ml(vd) if vd else None
    return LabSummary(
        corrected_calcium_mmol_l=ca.value_mmol_l if ca else None,
        calcium_corrected=ca.corrected if ca else False,
        calcium_status=ca.status if ca else None,
        calcium_grade=ca.grade if ca else None,
        calcium_date=ca.date if ca else None,
        vitd_ng_ml=vd_value,
        vitd_class=vitd_class(vd_value) if vd_value is not None else None,
        vitd_date=vd.date if vd else None,
        crcl_ml_min=crcl,
        egfr_ml_min=renal.value if renal.source == "egfr" else None,
        renal_source=renal.source,
        zoledronic_dose_mg=zoledronic_dose_mg(crcl) if crcl is not None else None,
    )
