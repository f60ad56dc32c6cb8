"""Carnet clinical rules: a pure package (no Django, no ORM, no clock).

Public API: ``compute_plan``, ``evaluate_gates``, ``RulesConfig``, the fact dataclasses, the
calendar helpers and ``RuleInputError``. Rule ids refer to /work/shared/clinical-rules.md.
"""

from __future__ import annotations

from . import _native

# First, before any rule module is imported: the compiled rules when they were built from these
# very sources, the plain modules otherwise (scheduling/rules/_native.py).
_native.activate(__path__)

from .calendar import add_days, add_months, age_on, local_date, notification_instant
from .config import RulesConfig
from .engine import compute_plan
from .errors import RuleInputError
from .facts import (
    Comedication,
    Course,
    DentalEvent,
    Dose,
    Lab,
    PatientFacts,
    PlanInput,
    Reevaluation,
    Stop,
)
from .flags import MESSAGES, Flag
from .gates import evaluate_gates
from .items import Plan, PlanItem
from .labs import LabSummary
from .protocols import PROTOCOL_IDS, Protocol, protocols

__all__ = [
    "MESSAGES",
    "PROTOCOL_IDS",
    "Comedication",
    "Course",
    "DentalEvent",
    "Dose",
    "Flag",
    "Lab",
    "LabSummary",
    "PatientFacts",
    "Plan",
    "PlanInput",
    "PlanItem",
    "Protocol",
    "Reevaluation",
    "RuleInputError",
    "RulesConfig",
    "Stop",
    "add_days",
    "add_months",
    "age_on",
    "compute_plan",
    "evaluate_gates",
    "local_date",
    "notification_instant",
    "protocols",
]
