"""What the iCal feeds say: titles and descriptions in the reader's language (en, fr).

A patient's own feed shows a neutral title unless they opt in to precise titles; staff feeds
name the patient (initials by default, since the calendar is a third party's).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from scheduling.models import ItemKind

NEUTRAL_TITLE = {"en": "Carnet: care appointment", "fr": "Carnet : rendez-vous de soins"}
NEUTRAL_DESCRIPTION = {
    "en": "Open the Carnet app for the details.",
    "fr": "Ouvrez l'application Carnet pour le détail.",
}
KIND_LABEL: dict[str, dict[str, str]] = {
    ItemKind.INJECTION: {"en": "injection", "fr": "injection"},
    ItemKind.CONSOLIDATION: {"en": "consolidation treatment", "fr": "traitement de consolidation"},
    ItemKind.CALCIUM_CHECK: {"en": "calcium blood test", "fr": "dosage de la calcémie"},
    ItemKind.VITAMIN_D_DOSE: {"en": "vitamin D dose", "fr": "prise de vitamine D"},
    ItemKind.VITAMIN_D_TEST: {"en": "vitamin D blood test", "fr": "dosage de la vitamine D"},
    ItemKind.CTX_CHECK: {"en": "CTX blood test", "fr": "dosage des CTX"},
    ItemKind.DENTAL_VISIT: {"en": "dental visit", "fr": "consultation dentaire"},
    ItemKind.REEVALUATION: {"en": "treatment re-evaluation", "fr": "réévaluation du traitement"},
}
APPOINTMENT_LABEL = {"en": "care appointment", "fr": "rendez-vous de soins"}
PRODUCT_LABEL: dict[str, dict[str, str]] = {
    "denosumab": {"en": "denosumab", "fr": "dénosumab"},
    "zoledronic_acid": {"en": "zoledronic acid", "fr": "acide zolédronique"},
    "alendronate": {"en": "alendronate", "fr": "alendronate"},
    "cholecalciferol": {"en": "vitamin D (cholecalciferol)", "fr": "vitamine D (cholécalciférol)"},
}
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "sep": ": ",
        "window": "To do between {first} and {last} (due {due}).",
        "due": "Due {due}.",
        "reminder": "Carnet reminder",
        "patient_calendar": "Carnet",
        "nurse_calendar": "Carnet — my appointments",
        "team_calendar": "Carnet — {team}",
        "cancelled": "Cancelled.",
        "done": "Done.",
        "out_of_window": "Booked outside the window: {reason}",
        "unbooked": "not booked",
    },
    "fr": {
        "sep": " : ",
        "window": "À faire entre le {first} et le {last} (échéance le {due}).",
        "due": "Échéance le {due}.",
        "reminder": "Rappel Carnet",
        "patient_calendar": "Carnet",
        "nurse_calendar": "Carnet — mes rendez-vous",
        "team_calendar": "Carnet — {team}",
        "cancelled": "Annulé.",
        "done": "Fait.",
        "out_of_window": "Réservé hors fenêtre : {reason}",
        "unbooked": "non réservé",
    },
}


def language_of(value: str | None) -> str:
    """The feed's language: the owner's if Carnet speaks it, else French."""
    return value if value in ("en", "fr") else "fr"


def day_text(value: date, lang: str) -> str:
    """A date as the reader writes it: 24/11/2026 in French, 2026-11-24 in English."""
    return value.strftime("%d/%m/%Y") if lang == "fr" else value.isoformat()


def _what(kind: str | None, product: str, dose_mg: object, lang: str, *, precise: bool) -> str:
    label = KIND_LABEL[kind][lang] if kind in KIND_LABEL else APPOINTMENT_LABEL[lang]
    if precise and product in PRODUCT_LABEL:
        label = f"{label} — {PRODUCT_LABEL[product][lang]}"
        if isinstance(dose_mg, int | float | Decimal):
            label = f"{label} {float(dose_mg):g} mg"
    return label


def patient_title(kind: str | None, product: str, dose_mg: object, lang: str, *, precise: bool) -> str:
    if not precise:
        return NEUTRAL_TITLE[lang]
    return f"Carnet{WORDS[lang]['sep']}{_what(kind, product, dose_mg, lang, precise=True)}"


def staff_title(
    first_name: str, last_name: str, kind: str | None, product: str, dose_mg: object, lang: str, *, precise: bool
) -> str:
    # Staff need to know whom; by default only initials leave Carnet for a third-party calendar.
    what = _what(kind, product, dose_mg, lang, precise=precise)
    who = f"{first_name} {last_name.upper()}" if precise else f"{first_name[:1]}. {last_name[:1]}.".upper()
    return f"{what[:1].upper()}{what[1:]} — {who}"
