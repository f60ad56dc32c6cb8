"""What lifts each blocking flag, in the nurse's words (worklist, nurse pages, API).

Pure data keyed by the flag codes of ``flags.MESSAGES``; rule ids say where each block comes from.
"""

from __future__ import annotations

__all__ = ["UNBLOCK", "unblock_hint"]

UNBLOCK: dict[str, dict[str, str]] = {
    # CA-03: no override; the calcium must be corrected and re-measured.
    "HYPOCALCAEMIA_BLOCK": {
        "fr": "Corriger la calcémie (calcium, vitamine D) puis recontrôler une calcémie corrigée normale.",
        "en": "Correct the calcium (calcium, vitamin D), then record a normal corrected calcium.",
    },
    # CA-04: osteoporosis injection held pending review.
    "HYPERCALCAEMIA": {
        "fr": "Avis du prescripteur, puis calcémie corrigée normale.",
        "en": "Prescriber review, then a normal corrected calcium.",
    },
    "HYPERCALCAEMIC_CRISIS": {
        "fr": "Prise en charge urgente ; injection après avis médical.",
        "en": "Urgent care; inject only after physician review.",
    },
    # CA-05
    "CALCIUM_CHECK_REQUIRED": {
        "fr": "Prélever une calcémie (avec albumine) dans les 30 jours avant l'injection.",
        "en": "Draw a calcium (with albumin) within 30 days before the injection.",
    },
    # VITD-04
    "VITD_GATE_BLOCK": {
        "fr": "Terminer la recharge en vitamine D, ou enregistrer un dosage 25-OH-D ≥ 30 ng/ml.",
        "en": "Finish the vitamin D loading, or record a 25-OH-D result ≥ 30 ng/mL.",
    },
    "VITD_TEST_REQUIRED": {
        "fr": "Enregistrer un dosage de 25-OH-vitamine D.",
        "en": "Record a 25-OH vitamin D result.",
    },
    "SUPPLEMENTATION_HOLD": {
        "fr": "Vitamine D suspendue : recontrôler 25-OH-D et calcémie.",
        "en": "Vitamin D on hold: re-check 25-OH-D and calcium.",
    },
    # DENT-01 / DENT-02 / ONC-00
    "DENTAL_EVAL_REQUIRED": {
        "fr": "Enregistrer un examen dentaire avec orthopantomogramme.",
        "en": "Record a dental examination with a panoramic X-ray.",
    },
    "DENTAL_HEALING_WAIT": {
        "fr": "Attendre 21 jours après l'extraction et enregistrer le feu vert du dentiste.",
        "en": "Wait 21 days after the extraction and record the dentist's clearance.",
    },
    "DENTAL_CLEARANCE_REQUIRED": {
        "fr": "Enregistrer le feu vert du dentiste.",
        "en": "Record the dentist's clearance.",
    },
    "RENAL_FUNCTION_REQUIRED": {
        "fr": "Enregistrer la fonction rénale (créatinine, DFG ou clairance).",
        "en": "Record renal function (creatinine, eGFR or clearance).",
    },
    # ZOL-03 / CONS-04
    "ZOL_CONTRAINDICATED_RENAL": {
        "fr": "Clairance < 30 ml/min : décision du spécialiste (pas d'acide zolédronique).",
        "en": "Clearance < 30 mL/min: specialist decision (no zoledronic acid).",
    },
    "ZOL5_CONTRAINDICATED_RENAL": {
        "fr": "Clairance < 35 ml/min : relais oral ou dénosumab au long cours, sur avis spécialisé.",
        "en": "Clearance < 35 mL/min: oral follow-on or long-term denosumab, on specialist advice.",
    },
    # DUP-01
    "DUPLICATE_DENOSUMAB_BLOCK": {
        "fr": "Arrêter l'un des deux traitements par dénosumab.",
        "en": "Stop one of the two denosumab courses.",
    },
}


def unblock_hint(code: str, lang: str = "fr") -> str:
    texts = UNBLOCK.get(code)
    if texts is None:
        return ""
    return texts.get(lang) or texts["fr"]
