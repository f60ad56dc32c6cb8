"""Protocols as data: interval, reminder, window, escalation ladder, post-dose checks.

The ladders come from the policy config (P6, P8), so ``protocols(config)`` builds the table;
``PROTOCOL_IDS`` is the fixed vocabulary of clinical-rules.md section 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from types import MappingProxyType

from .calendar import add_days, add_months
from .config import RulesConfig

__all__ = [
    "ALENDRONATE",
    "CHECK_LADDER",
    "DMAB_ONCO",
    "DMAB_OP",
    "PROTOCOL_IDS",
    "RECIPIENTS",
    "VITD",
    "ZOL_ONCO",
    "ZOL_OP",
    "EscalationLevel",
    "Interval",
    "Protocol",
    "protocols",
]

DMAB_OP = "denosumab_op_60mg_q6m"
DMAB_ONCO = "denosumab_onco_120mg"
ZOL_ONCO = "zoledronic_onco_4mg"
ZOL_OP = "zoledronic_op_5mg"
ALENDRONATE = "alendronate_op_70mg_weekly"
VITD = "vitamin_d_50000iu"
PROTOCOL_IDS = (DMAB_OP, DMAB_ONCO, ZOL_ONCO, ZOL_OP, ALENDRONATE, VITD)
RECIPIENTS = ("patient", "nurse", "physician", "specialist")


@dataclass(frozen=True, slots=True)
class EscalationLevel:
    """One rung of a ladder: from ``due + offset_days`` on, notify ``notify`` and raise flags."""

    level: str
    offset_days: int
    severity: str
    notify: tuple[str, ...]
    flag_codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Interval:
    """A dosing interval: calendar months (TIME-02) or calendar days (TIME-03)."""

    months: int = 0
    days: int = 0

    def after(self, anchor: date, k: int = 1) -> date:
        """The k-th projection from ``anchor``: anchor + k·interval, never chained (TIME-02)."""
        if self.months:
            return add_months(anchor, self.months * k)
        return add_days(anchor, self.days * k)

    @property
    def label(self) -> str:
        return f"{self.months}m" if self.months else f"{self.days}d"


@dataclass(frozen=True, slots=True)
class Protocol:
    id: str
    product: str
    dose_mg: float
    route: str
    indication: str  # osteoporosis | oncology | supplement
    family: str  # denosumab | bisphosphonate | vitamin_d
    interval: Interval | None  # None: a single administration (consolidation)
    reminder_days: int
    window_before_days: int
    window_after_days: int
    window_status: bool  # True when the ladder has a `window_open` status (OP-04)
    escalation: tuple[EscalationLevel, ...]
    post_dose_checks: tuple[str, ...]
    notification_offsets: tuple[int, ...]
    rule: str

    @property
    def antiresorptive(self) -> bool:
        return self.family in ("denosumab", "bisphosphonate")

    @property
    def parenteral_antiresorptive(self) -> bool:
        """Denosumab injections and zoledronic acid infusions (CA-03, CA-05)."""
        return self.family == "denosumab" or self.id in (ZOL_ONCO, ZOL_OP)


# A generic ladder for checks (calcium, CTX, 25-OH-D, dental): late from the day after.
CHECK_LADDER = (EscalationLevel("L1", 1, "W", ("patient", "nurse"), ("CHECK_OVERDUE",)),)


def _op_ladder(days: tuple[int, ...], *, consolidation: bool) -> tuple[EscalationLevel, ...]:
    # OP-04 / CONS-05: W -> H -> C -> C.
    l4 = (
        ("SPECIALIST_REFERRAL",)
        if consolidation
        else ("DISCONTINUATION_PRESUMED", "CONSOLIDATION_REQUIRED", "SPECIALIST_REFERRAL")
    )
    return (
        EscalationLevel("L1", days[0], "W", ("patient", "nurse"), ("OVERDUE",)),
        EscalationLevel("L2", days[1], "H", ("physician",), ("OVERDUE_OUTSIDE_WINDOW",)),
        EscalationLevel("L3", days[2], "C", ("physician", "specialist"), ("OVERDUE_INJECT_ASAP",)),
        EscalationLevel("L4", days[3], "C", ("physician", "specialist"), l4),
    )


@lru_cache(maxsize=32)
def _build(config: RulesConfig) -> Mapping[str, Protocol]:
    months, days = config.onco_interval
    onco = Interval(months=months, days=days)
    op_ladder = _op_ladder(config.op_escalation_days, consolidation=False)
    cons_ladder = _op_ladder(config.op_escalation_days, consolidation=True)
    d1, d2, d3 = config.onco_dmab_escalation_days
    z1, z2 = config.zol_escalation_days
    onco_ladder = (  # ONC-02
        EscalationLevel("L1", d1, "W", ("patient", "nurse"), ("OVERDUE",)),
        EscalationLevel("L2", d2, "H", ("physician",), ("PRESCRIBER_ALERT",)),
        EscalationLevel("L3", d3, "C", ("physician", "specialist"), ("REBOUND_RISK_ONCO",)),
    )
    zol_ladder = (  # ZOL-08
        EscalationLevel("L1", z1, "W", ("patient", "nurse"), ("OVERDUE",)),
        EscalationLevel("L2", z2, "H", ("physician",), ("PRESCRIBER_ALERT",)),
    )
    r_op, w_op, r_on = config.op_reminder_days, config.op_window_days, config.onco_reminder_days
    # Doses are floats, as the field says: compiled rules (``_native``) store an int given here as
    # a float, and a plan's digest must not depend on which rules computed it.
    table = (
        # OP-01 interval, OP-02 reminder, OP-03 window, OP-04 ladder.
        Protocol(DMAB_OP, "denosumab", 60.0, "SC", "osteoporosis", "denosumab",
                 Interval(months=6), r_op, w_op, w_op, True, op_ladder,
                 ("CA-POST-01", "CA-POST-02", "CA-RISK-01"), (-r_op, -14, -3, 0), "OP-01"),
        # ONC-01 interval from P7, ONC-02 ladder; window = the reminder week and L1 week.
        Protocol(DMAB_ONCO, "denosumab", 120.0, "SC", "oncology", "denosumab",
                 onco, r_on, r_on, d2 - 1, False, onco_ladder,
                 ("CA-POST-02", "CA-POST-03", "CA-RISK-01"), (-r_on, -1, 0), "ONC-01"),
        # ZOL-01 interval from P7 (ZOL-04 quarterly on response), ZOL-08 ladder.
        Protocol(ZOL_ONCO, "zoledronic_acid", 4.0, "IV", "oncology", "bisphosphonate",
                 onco, r_on, r_on, z2 - 1, False, zol_ladder,
                 ("ZOL_HYDRATION",), (-r_on, -1, 0), "ZOL-01"),
        # CONS-01 single infusion, CONS-05 ladder (same clock as OP-04).
        Protocol(ZOL_OP, "zoledronic_acid", 5.0, "IV", "osteoporosis", "bisphosphonate",
                 None, r_op, w_op, w_op, True, cons_ladder,
                 ("CONS-02", "ZOL_HYDRATION"), (-r_op, -14, -3, 0), "CONS-01"),
        # CONS-03 weekly oral consolidation for `oral_consolidation_months` (P11).
        Protocol(ALENDRONATE, "alendronate", 70.0, "PO", "osteoporosis", "bisphosphonate",
                 Interval(days=7), r_op, w_op, w_op, True, cons_ladder,
                 (), (-14, -3, 0), "CONS-03"),
        # VITD-02 weekly loading, VITD-03 monthly maintenance.
        Protocol(VITD, "cholecalciferol", 1.25, "PO", "supplement", "vitamin_d",
                 Interval(months=1), 0, 0, 6, False, CHECK_LADDER,
                 (), (0,), "VITD-03"),
    )  # fmt: skip
    return MappingProxyType({p.id: p for p in table})


def protocols(config: RulesConfig) -> Mapping[str, Protocol]:
    """The protocol table for ``config`` (read-only mapping id -> Protocol)."""
    return _build(config)
