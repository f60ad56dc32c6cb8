"""Co-medication classes (RISK-01, RISK-02, CA-RISK-01, BIO-01) and prednisone equivalents."""

from __future__ import annotations

from datetime import date

from .facts import Comedication

__all__ = ["PREDNISONE_EQUIVALENT", "active_on", "drug_class", "prednisone_mg"]

# mg of prednisone per mg of the drug (usual anti-inflammatory equivalences).
PREDNISONE_EQUIVALENT: dict[str, float] = {
    "prednisone": 1.0,
    "prednisolone": 1.0,
    "methylprednisolone": 1.25,
    "triamcinolone": 1.25,
    "deflazacort": 5 / 6,
    "hydrocortisone": 0.25,
    "cortisone": 0.2,
    "dexamethasone": 5 / 0.75,
    "betamethasone": 5 / 0.6,
}
_NAMES: dict[str, tuple[str, ...]] = {
    "antiangiogenic": (
        "bevacizumab", "aflibercept", "ramucirumab", "sunitinib", "sorafenib",
        "pazopanib", "axitinib", "cabozantinib", "lenvatinib", "nintedanib",
    ),
    "biologic": (
        "belimumab", "rituximab", "anifrolumab", "adalimumab", "infliximab",
        "etanercept", "tocilizumab", "abatacept",
    ),
    "immunosuppressant": (
        "methotrexate", "azathioprine", "mycophenolate", "ciclosporin", "cyclosporine",
        "tacrolimus", "cyclophosphamide", "leflunomide",
    ),
    "calcium_lowering": ("cinacalcet", "etelcalcetide", "foscarnet"),
}  # fmt: skip
_BY_NAME: dict[str, str] = dict.fromkeys(PREDNISONE_EQUIVALENT, "glucocorticoid")
_BY_NAME.update({name: cls for cls, names in _NAMES.items() for name in names})


def drug_class(med: Comedication) -> str:
    """The recorded class, else the class known for the name, else ``other``."""
    if med.drug_class:
        return med.drug_class
    return _BY_NAME.get(med.name.strip().lower(), "other")


def prednisone_mg(med: Comedication) -> float | None:
    """Prednisone-equivalent mg/day of a glucocorticoid (RISK-02); None when unknown."""
    if med.mg_per_day is None:
        return None
    factor = PREDNISONE_EQUIVALENT.get(med.name.strip().lower())
    return med.mg_per_day * factor if factor is not None else None


def active_on(med: Comedication, day: date) -> bool:
    return med.start_date <= day and (med.stop_date is None or day < med.stop_date)
