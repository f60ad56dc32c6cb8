"""Flags (clinical-rules.md §1.3) and their message catalogue in French and English.

Severity: I < W < H < C. ``blocks``: the administration cannot be validated while the flag holds;
``override_allowed``: an emergency override ("sauf urgence") may lift the block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from .facts import positional

__all__ = ["MESSAGES", "REBOUND_RISK_PATIENT_FR", "SEVERITY_ORDER", "Flag", "make_flag", "message"]

SEVERITY_ORDER = {"I": 0, "W": 1, "H": 2, "C": 3}

# OP-05: the patient text, verbatim from [000].
REBOUND_RISK_PATIENT_FR = (
    "il existe un risque de rebond fracturaire (fractures vertébrales) si les injections de "
    "dénosumab sont espacées de plus de 6 mois."
)

ParamValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True, init=False)
class Flag:
    code: str
    rule: str
    severity: str
    blocks: bool = False
    override_allowed: bool = False
    params: tuple[tuple[str, ParamValue], ...] = ()
    subject: str | None = None  # the item or course key the flag is about, if any

    def __init__(
        self,
        code: str,
        rule: str,
        severity: str,
        blocks: bool = False,
        override_allowed: bool = False,
        params: tuple[tuple[str, ParamValue], ...] = (),
        subject: str | None = None,
    ) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "rule", rule)
        object.__setattr__(self, "severity", severity)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "override_allowed", override_allowed)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "subject", subject)

    @property
    def message_key(self) -> str:
        return self.code

    @property
    def param_map(self) -> dict[str, ParamValue]:
        return dict(self.params)

    def message(self, lang: str = "fr") -> str:
        return message(self.code, lang, self.param_map)


# Every plan makes a few flags: a positional constructor without the frozen ``__init__``.
_flag = positional(Flag)


def make_flag(
    code: str,
    rule: str,
    severity: str,
    *,
    blocks: bool = False,
    override_allowed: bool = False,
    subject: str | None = None,
    **params: ParamValue | date,
) -> Flag:
    """Build a flag; date params are stored as ISO strings, params sorted for stable equality."""
    if not params:
        return _flag(code, rule, severity, blocks, override_allowed, (), subject)
    clean = tuple(sorted([(k, v.isoformat() if isinstance(v, date) else v) for k, v in params.items()]))
    return _flag(code, rule, severity, blocks, override_allowed, clean, subject)


class _Safe(dict[str, ParamValue]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def message(code: str, lang: str, params: Mapping[str, ParamValue] | None = None) -> str:
    texts = MESSAGES.get(code)
    if texts is None:
        return code
    text = texts.get(lang) or texts["fr"]
    return text.format_map(_Safe(params or {}))


MESSAGES: dict[str, dict[str, str]] = {
    # OP
    "EARLY_INJECTION": {
        "fr": "Injection avant l'ouverture de la fenêtre (échéance {due}).",
        "en": "Injection before the window opens (due {due}).",
    },
    "INJECTION_REMINDER": {
        "fr": "Prochaine administration le {due} : prendre rendez-vous et prescrire la calcémie.",
        "en": "Next administration on {due}: book the appointment and order the calcium test.",
    },
    "ZOL_DOSE_RENAL": {
        "fr": "Dose d'acide zolédronique selon la clairance ({crcl} ml/min) : {dose} mg.",
        "en": "Zoledronic acid dose for the clearance ({crcl} mL/min): {dose} mg.",
    },
    "OVERDUE": {
        "fr": "Administration en retard (échéance {due}).",
        "en": "Administration overdue (due {due}).",
    },
    "OVERDUE_OUTSIDE_WINDOW": {
        "fr": "Retard au-delà de ±3 semaines : prévenir le prescripteur (échéance {due}).",
        "en": "Late beyond ±3 weeks: notify the prescriber (due {due}).",
    },
    "OVERDUE_INJECT_ASAP": {
        "fr": "Retard de plus de 4 semaines : injecter dès que possible (échéance {due}).",
        "en": "More than 4 weeks late: inject as soon as possible (due {due}).",
    },
    "DISCONTINUATION_PRESUMED": {
        "fr": "Retard de plus de 16 semaines : arrêt du dénosumab présumé.",
        "en": "More than 16 weeks late: denosumab discontinuation presumed.",
    },
    "CONSOLIDATION_REQUIRED": {
        "fr": "Relais par bisphosphonate requis (acide zolédronique 5 mg) le {due}.",
        "en": "Bisphosphonate consolidation required (zoledronic acid 5 mg) on {due}.",
    },
    "SPECIALIST_REFERRAL": {
        "fr": "Avis spécialisé requis.",
        "en": "Specialist referral required.",
    },
    "REBOUND_RISK": {"fr": REBOUND_RISK_PATIENT_FR,
                     "en": "There is a risk of rebound fractures (vertebral fractures) if "
                           "denosumab injections are more than 6 months apart."},
    "REEVALUATION_DUE": {
        "fr": "Réévaluation du traitement le {due} (examen clinique, biologie, densitométrie).",
        "en": "Treatment re-evaluation on {due} (clinical exam, biology, DXA).",
    },
    "CALCIUM_VITD_INTAKE": {
        "fr": "Optimiser les apports : calcium 1000-1200 mg/j (alimentation d'abord), "
              "vitamine D ≥ 400 UI/j.",
        "en": "Optimise intake: calcium 1000-1200 mg/day (food first), vitamin D ≥ 400 IU/day.",
    },
    "DMAB_STOPPED": {
        "fr": "Arrêt du dénosumab le {date} : échéances annulées, relais à organiser.",
        "en": "Denosumab stopped on {date}: due dates cancelled, consolidation to organise.",
    },
    # Oncology
    "VITD_TEST_REQUIRED": {
        "fr": "Dosage de 25-OH-vitamine D requis avant la première dose.",
        "en": "A 25-OH vitamin D result is required before the first dose.",
    },
    "RENAL_FUNCTION_REQUIRED": {
        "fr": "Fonction rénale requise avant la première dose.",
        "en": "Renal function is required before the first dose.",
    },
    "DENTAL_EVAL_REQUIRED": {
        "fr": "Évaluation bucco-dentaire par un spécialiste avec orthopantomogramme avant la "
              "première dose.",
        "en": "Specialist dental evaluation with a panoramic X-ray before the first dose.",
    },
    "PRESCRIBER_ALERT": {
        "fr": "Retard d'administration : alerte au prescripteur (échéance {due}).",
        "en": "Late administration: prescriber alert (due {due}).",
    },
    "REBOUND_RISK_ONCO": {
        "fr": "Un cycle complet de dénosumab a été manqué : risque de rebond.",
        "en": "A whole denosumab cycle has been missed: rebound risk.",
    },
    "DMAB_ONC_SPACING_NOT_SUPPORTED": {
        "fr": "Espacement du dénosumab 120 mg non validé : intervalle de base conservé.",
        "en": "Spacing denosumab 120 mg is not supported: base interval kept.",
    },
    "SUPPLEMENTATION_DAILY": {
        "fr": "Calcium ≥ 500 mg/j et vitamine D ≥ 400 UI/j (apports totaux 1000-1500 mg/j).",
        "en": "Calcium ≥ 500 mg/day and vitamin D ≥ 400 IU/day (total 1000-1500 mg/day).",
    },
    "SUPPLEMENTATION_HOLD": {
        "fr": "Suspendre la supplémentation vitamino-calcique.",
        "en": "Hold calcium and vitamin D supplements.",
    },
    "ADYNAMIC_BONE_WARNING": {
        "fr": "Insuffisance rénale sévère (< 30 ml/min) : risque d'os adynamique.",
        "en": "Severe renal impairment (< 30 mL/min): adynamic bone risk.",
    },
    "CONSOLIDATION_REQUIRED_ONCO": {
        "fr": "Arrêt du dénosumab 120 mg : acide zolédronique le {due} (avis onco-rhumatologique,"
              " suivi des CTX).",
        "en": "Denosumab 120 mg stopped: zoledronic acid on {due} (onco-rheumatology plan, CTX).",
    },
    # Zoledronic acid
    "ZOL_HYDRATION": {
        "fr": "Bonne hydratation le jour et le lendemain de la perfusion (≥ 15 min, "
              "20-30 min conseillées).",
        "en": "Good hydration on the infusion day and the day after (≥ 15 min, 20-30 advised).",
    },
    "ZOL_CONTRAINDICATED_RENAL": {
        "fr": "Acide zolédronique contre-indiqué : clairance < 30 ml/min.",
        "en": "Zoledronic acid contraindicated: creatinine clearance < 30 mL/min.",
    },
    "ZOL_QUARTERLY": {
        "fr": "Réponse documentée : acide zolédronique trimestriel.",
        "en": "Documented response: zoledronic acid every 3 months.",
    },
    "ZOL_PARACETAMOL_FIRST_INFUSION": {
        "fr": "Première perfusion : paracétamol 1 g x3/j le jour et le lendemain.",
        "en": "First infusion: paracetamol 1 g three times a day on the day and the day after.",
    },
    "ZOL_CREATININE_BEFORE_EACH_DOSE": {
        "fr": "Créatinine et clairance avant chaque perfusion.",
        "en": "Creatinine and clearance before each infusion.",
    },
    "ONJ_RISK_24M": {
        "fr": "Plus de 24 mois d'acide zolédronique : risque d'ostéonécrose accru, réévaluer.",
        "en": "More than 24 months of zoledronic acid: higher ONJ risk, re-evaluate.",
    },
    # Consolidation
    "EARLY_SECOND_ZOL": {
        "fr": "CTX {ctx} ng/ml > 0,300 : deuxième perfusion d'acide zolédronique anticipée.",
        "en": "CTX {ctx} ng/mL > 0.300: early second zoledronic acid infusion.",
    },
    "ORAL_CONSOLIDATION": {
        "fr": "Alendronate 70 mg hebdomadaire pendant {months} mois.",
        "en": "Alendronate 70 mg weekly for {months} months.",
    },
    "ZOL5_CONTRAINDICATED_RENAL": {
        "fr": "Acide zolédronique 5 mg contre-indiqué (clairance < 35 ml/min) : décision "
              "spécialisée (voie orale ou dénosumab au long cours).",
        "en": "Zoledronic acid 5 mg contraindicated (CrCl < 35 mL/min): specialist decision "
              "(oral option or long-term denosumab).",
    },
    "DMAB_SWITCH_NO_CONSOLIDATION": {
        "fr": "Relais ostéoporose vers oncologie : échéance Prolia annulée, pas de relais "
              "bisphosphonate nécessaire.",
        "en": "Switch from osteoporosis to oncology: Prolia due date cancelled, no "
              "consolidation needed.",
    },
    # Calcium
    "HYPOCALCAEMIA_BLOCK": {
        "fr": "Hypocalcémie (calcémie corrigée {value} mmol/l, grade {grade}) : injection "
              "bloquée.",
        "en": "Hypocalcaemia (corrected calcium {value} mmol/L, grade {grade}): administration "
              "blocked.",
    },
    "HYPERCALCAEMIA": {
        "fr": "Hypercalcémie (calcémie corrigée {value} mmol/l, grade {grade}).",
        "en": "Hypercalcaemia (corrected calcium {value} mmol/L, grade {grade}).",
    },
    "HYPERCALCAEMIC_CRISIS": {
        "fr": "Crise aiguë hypercalcémique (calcémie corrigée > 3,5 mmol/l).",
        "en": "Acute hypercalcaemic crisis (corrected calcium > 3.5 mmol/L).",
    },
    "URGENT_PHYSICIAN_REVIEW": {
        "fr": "Avis médical urgent.",
        "en": "Urgent physician review.",
    },
    "CALCIUM_CHECK_REQUIRED": {
        "fr": "Calcémie de moins de {days} jours requise avant l'administration.",
        "en": "A calcium result less than {days} days old is required before administration.",
    },
    "POST_INJECTION_CALCIUM": {
        "fr": "Contrôle de la calcémie (phosphore, magnésium) le {due}.",
        "en": "Calcium check (phosphate, magnesium) on {due}.",
    },
    "ADVANCED_CKD_BOXED_WARNING": {
        "fr": "DFG < 30 ou dialyse : risque d'hypocalcémie sévère sous dénosumab.",
        "en": "eGFR < 30 or dialysis: risk of severe hypocalcaemia on denosumab.",
    },
    "CKD_MBD_EVALUATION_REQUIRED": {
        "fr": "Bilan CKD-MBD avant la première dose (PTH, calcium, 25-OH-D, 1,25-(OH)2-D).",
        "en": "CKD-MBD evaluation before the first dose (iPTH, calcium, 25-OH-D, 1,25-(OH)2-D).",
    },
    "CKD_MBD_SPECIALIST_SUPERVISION": {
        "fr": "Suivi par un spécialiste des troubles minéraux de l'IRC.",
        "en": "Supervision by a CKD-MBD specialist.",
    },
    "ENSURE_CALCIUM_SUPPLEMENT": {
        "fr": "Corticothérapie : s'assurer de la prise du calcium.",
        "en": "Glucocorticoids: make sure calcium supplements are taken.",
    },
    "HYPOCALCAEMIA_PREDISPOSITION": {
        "fr": "Terrain à risque d'hypocalcémie : calcium, phosphore, magnésium à J+14.",
        "en": "Predisposed to hypocalcaemia: calcium, phosphate, magnesium at day 14.",
    },
    # Vitamin D
    "VITD_LOADING_REQUIRED": {
        "fr": "25-OH-D {value} ng/ml : {doses} prises hebdomadaires de 50 000 UI.",
        "en": "25-OH-D {value} ng/mL: {doses} weekly doses of 50,000 IU.",
    },
    "VITD_MAINTENANCE": {
        "fr": "Entretien : 50 000 UI de cholécalciférol par mois.",
        "en": "Maintenance: cholecalciferol 50,000 IU monthly.",
    },
    "VITD_GATE_BLOCK": {
        "fr": "Carence en vitamine D (< 20 ng/ml) : corriger avant l'antirésorbeur (sauf urgence)"
              ", au plus tôt le {earliest}.",
        "en": "Vitamin D deficiency (< 20 ng/mL): correct before the antiresorptive (unless "
              "urgent), earliest {earliest}.",
    },
    "VITD_GATE_WARNING": {
        "fr": "Vitamine D insuffisante (20-30 ng/ml) : recharge en cours jusqu'au {earliest}.",
        "en": "Vitamin D insufficient (20-30 ng/mL): loading until {earliest}.",
    },
    "VITD_INTOXICATION": {
        "fr": "25-OH-D > 150 ng/ml : intoxication possible, arrêter la vitamine D, contrôler la "
              "calcémie.",
        "en": "25-OH-D > 150 ng/mL: possible intoxication, stop vitamin D, check calcium.",
    },
    "VITD_FOLLOWUP": {
        "fr": "Contrôle de la 25-OH-D le {due}.",
        "en": "Repeat 25-OH-D on {due}.",
    },
    # Dental / ONJ
    "DENTAL_HEALING_WAIT": {
        "fr": "Extraction le {extraction} : attendre la cicatrisation, début au plus tôt le "
              "{earliest} (sauf urgence).",
        "en": "Extraction on {extraction}: wait for healing, start no earlier than {earliest} "
              "(unless urgent).",
    },
    "DENTAL_CLEARANCE_REQUIRED": {
        "fr": "Feu vert du dentiste requis après l'extraction du {extraction}.",
        "en": "Dentist clearance required after the extraction on {extraction}.",
    },
    "DENTAL_HEALING_SHORT_WINDOW_INFO": {
        "fr": "Cicatrisation courte (3 à 4 semaines) : début recommandé à partir du "
              "{recommended}.",
        "en": "Short healing time (3-4 weeks): start recommended from {recommended}.",
    },
    "DENTAL_FOLLOWUP": {
        "fr": "Suivi dentaire semestriel : prochain contrôle le {due}.",
        "en": "Six-monthly dental follow-up: next visit on {due}.",
    },
    "AVOID_EXTRACTIONS": {
        "fr": "Sous traitement : éviter les extractions, privilégier le traitement conservateur.",
        "en": "On treatment: avoid extractions, prefer conservative care.",
    },
    "ONJ_SUSPECTED": {
        "fr": "Exposition osseuse maxillo-faciale : ostéonécrose de la mâchoire suspectée.",
        "en": "Exposed maxillofacial bone: osteonecrosis of the jaw suspected.",
    },
    "REFER_SPECIALIZED_CENTRE": {
        "fr": "Adresser le patient en centre spécialisé.",
        "en": "Refer the patient to a specialised centre.",
    },
    "ONJ_CONFIRMED": {
        "fr": "Exposition osseuse persistante au-delà de 8 semaines : ostéonécrose de la "
              "mâchoire.",
        "en": "Bone still exposed after more than 8 weeks: osteonecrosis of the jaw.",
    },
    "ONJ_DEFINITION_EXCLUDED_RADIATION": {
        "fr": "Antécédent d'irradiation crânio-faciale : rechercher une ostéoradionécrose.",
        "en": "History of craniofacial irradiation: evaluate for osteoradionecrosis.",
    },
    "ONJ_RISK_CORTICOSTEROIDS": {
        "fr": "Facteur de risque d'ostéonécrose : corticoïdes.",
        "en": "ONJ risk factor: corticosteroids.",
    },
    "ONJ_RISK_ANTIANGIOGENIC": {
        "fr": "Facteur de risque d'ostéonécrose : inhibiteur de l'angiogenèse.",
        "en": "ONJ risk factor: angiogenesis inhibitor.",
    },
    "ONJ_RISK_HEAD_NECK_RT": {
        "fr": "Facteur de risque d'ostéonécrose : radiothérapie de la tête et du cou.",
        "en": "ONJ risk factor: head and neck radiotherapy.",
    },
    "ONJ_RISK_TOBACCO": {
        "fr": "Facteur de risque d'ostéonécrose : tabac.",
        "en": "ONJ risk factor: tobacco.",
    },
    "ONJ_RISK_ALCOHOL": {
        "fr": "Facteur de risque d'ostéonécrose : alcool.",
        "en": "ONJ risk factor: alcohol.",
    },
    "OP_RISK_GLUCOCORTICOIDS": {
        "fr": "Corticothérapie ≥ 7,5 mg/j depuis plus de 3 mois : facteur de risque "
              "d'ostéoporose.",
        "en": "Glucocorticoids ≥ 7.5 mg/day for more than 3 months: osteoporosis risk factor.",
    },
    "CONCOMITANT_BIOLOGIC_INFO": {
        "fr": "Biothérapie associée ({name}) : pas d'interaction connue, association rapportée "
              "comme possible.",
        "en": "Concomitant biologic ({name}): no known interaction, combination reported viable.",
    },
    "INFECTION_VIGILANCE_IMMUNOSUPPRESSION": {
        "fr": "Immunosuppression associée : vigilance infectieuse.",
        "en": "Immunosuppressive co-therapy: watch for infections.",
    },
    "DUPLICATE_DENOSUMAB_BLOCK": {
        "fr": "Deux traitements par dénosumab actifs (Prolia et Xgeva) : administration "
              "bloquée.",
        "en": "Two active denosumab courses (Prolia and Xgeva): administration blocked.",
    },
    "DMAB_BISPHOSPHONATE_CONCOMITANT": {
        "fr": "Dénosumab et bisphosphonate en même temps : à revoir.",
        "en": "Denosumab and a bisphosphonate at the same time: review.",
    },
    "CHECK_OVERDUE": {
        "fr": "Contrôle en retard (prévu le {due}).",
        "en": "Check overdue (planned {due}).",
    },
}  # fmt: skip
