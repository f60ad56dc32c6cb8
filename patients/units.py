"""Lab units: what each test accepts, how it converts to its stored unit, what is plausible.

Pure Python (no Django) so the rules and the forms share one table. Conversions follow
clinical-rules.md: CA-01 (mg/dL ÷ 4.008 → mmol/L; albumin g/dL × 10 → g/L) and VITD-01
(nmol/L = ng/mL × 2.5, the seed's convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True, slots=True)
class LabTest:
    code: str
    label: str
    unit: str  # the stored (normalised) unit
    factors: dict[str, Decimal]  # accepted unit -> multiply to get the stored unit
    plausible: tuple[Decimal, Decimal]  # inclusive range, in the stored unit
    places: int  # decimal places kept after conversion


def _d(value: str) -> Decimal:
    return Decimal(value)


LAB_TESTS: dict[str, LabTest] = {
    t.code: t
    for t in (
        LabTest(
            "calcium_total",
            "Total calcium",
            "mmol/L",
            {"mmol/L": _d("1"), "mg/dL": _d("1") / _d("4.008")},
            (_d("1.00"), _d("5.00")),
            3,
        ),
        LabTest(
            "albumin",
            "Albumin",
            "g/L",
            {"g/L": _d("1"), "g/dL": _d("10")},
            (_d("10"), _d("60")),
            1,
        ),
        LabTest(
            "calcium_ionised",
            "Ionised calcium",
            "mmol/L",
            {"mmol/L": _d("1"), "mg/dL": _d("1") / _d("4.008")},
            (_d("0.50"), _d("2.50")),
            3,
        ),
        LabTest(
            "25ohd",
            "25-OH vitamin D",
            "ng/mL",
            {"ng/mL": _d("1"), "nmol/L": _d("1") / _d("2.5")},
            (_d("1"), _d("400")),
            1,
        ),
        LabTest(
            "creatinine",
            "Creatinine",
            "umol/L",
            {"umol/L": _d("1"), "µmol/L": _d("1"), "mg/dL": _d("88.42")},
            (_d("20"), _d("2000")),
            1,
        ),
        LabTest(
            "egfr",
            "eGFR (CKD-EPI)",
            "mL/min/1.73m2",
            {"mL/min/1.73m2": _d("1"), "mL/min/1.73m²": _d("1"), "mL/min/1.73 m2": _d("1")},
            (_d("1"), _d("200")),
            1,
        ),
        LabTest(
            "crcl", "Creatinine clearance (Cockcroft-Gault)", "mL/min", {"mL/min": _d("1")}, (_d("1"), _d("250")), 1
        ),
        LabTest(
            "ctx",
            "CTX",
            "ng/mL",
            {"ng/mL": _d("1"), "pg/mL": _d("0.001")},
            (_d("0.01"), _d("5.00")),
            3,
        ),
        LabTest(
            "phosphate",
            "Phosphate",
            "mmol/L",
            {"mmol/L": _d("1"), "mg/dL": _d("1") / _d("3.097")},
            (_d("0.10"), _d("5.00")),
            2,
        ),
        LabTest(
            "magnesium",
            "Magnesium",
            "mmol/L",
            {"mmol/L": _d("1"), "mg/dL": _d("1") / _d("2.431")},
            (_d("0.10"), _d("5.00")),
            2,
        ),
        LabTest(
            "pth",
            "Intact PTH",
            "pg/mL",
            {"pg/mL": _d("1"), "ng/L": _d("1"), "pmol/L": _d("9.43")},
            (_d("1"), _d("3000")),
            1,
        ),
    )
}


class UnitError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def normalise(test: str, value: Decimal, unit: str, *, field: str = "value") -> Decimal:
    """Convert ``value`` in ``unit`` to the test's stored unit and check it is plausible."""
    spec = LAB_TESTS.get(test)
    if spec is None:
        raise UnitError("test", f"Unknown lab test {test!r}.")
    factor = spec.factors.get(unit)
    if factor is None:
        accepted = ", ".join(spec.factors)
        raise UnitError("unit", f"Unit {unit!r} does not fit {spec.label}; use one of: {accepted}.")
    converted = (value * factor).quantize(Decimal(1).scaleb(-spec.places), rounding=ROUND_HALF_UP)
    low, high = spec.plausible
    if not low <= converted <= high:
        raise UnitError(
            field,
            f"{spec.label} {value} {unit} is outside the plausible range "
            f"{low}–{high} {spec.unit}; check the value and its unit.",
        )
    return converted


def corrected_calcium(calcium_mmol_l: Decimal, albumin_g_l: Decimal | None) -> Decimal:
    """CA-01: corrected Ca = measured Ca + (40 − albumin g/L) / 40; without albumin, measured."""
    if albumin_g_l is None:
        return calcium_mmol_l
    return calcium_mmol_l + (Decimal(40) - albumin_g_l) / Decimal(40)
