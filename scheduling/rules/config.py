"""Policy values of clinical-rules.md section 3 (P1 … P19), one field each, with the table's default.

``RulesConfig.from_mapping`` validates a plain mapping (JSON, settings) and raises
:class:`RuleInputError` naming the field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import RuleInputError

__all__ = ["RulesConfig"]

_CHOICES: dict[str, tuple[object, ...]] = {
    "month_end_rule": ("clamp",),
    "day_arithmetic": ("calendar_days",),
    "leap_birthday": ("feb28", "mar1"),
    "onco_monthly_interval": ("28d", "1m"),
    "onco_consolidation_timing": ("next_due",),
    "zol_crcl_rounding": ("none",),
    "oral_consolidation_months": (12, 18, 24),
}


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Every policy choice of section 3; defaults are the table's."""

    # P1: clinical arithmetic on local dates in this zone (TIME-01).
    timezone: str = "Europe/Paris"
    # P2: end-of-month clamp for "+N months" (TIME-02); the only accepted value.
    month_end_rule: str = "clamp"
    # P3: day offsets are calendar days on local dates (TIME-03); the only accepted value.
    day_arithmetic: str = "calendar_days"
    # P4: notifications fire at this local hour (TIME-04).
    notify_hour: int = 9
    # P5: a 29 February birthday is reached on 28 February (TIME-05).
    leap_birthday: str = "feb28"
    # P6: osteoporosis reminder D-28, window ±21 d, escalation +1/+22/+29/+113 (OP-02..04, CONS-05).
    op_reminder_days: int = 28
    op_window_days: int = 21
    op_escalation_days: tuple[int, int, int, int] = (1, 22, 29, 113)
    # P7: Xgeva / Zometa base interval: "28d" (label, default) or "1m" (ONC-01, ZOL-01).
    onco_monthly_interval: str = "28d"
    # P8: oncology reminder D-7 and ladders (ONC-02, ZOL-08).
    onco_reminder_days: int = 7
    onco_dmab_escalation_days: tuple[int, int, int] = (1, 8, 29)
    zol_escalation_days: tuple[int, int] = (1, 29)
    # P9: oncology consolidation due when the next denosumab dose would have been due (ONC-07).
    onco_consolidation_timing: str = "next_due"
    # P10: zoledronic acid bands are continuous, CrCl never rounded (ZOL-02).
    zol_crcl_rounding: str = "none"
    # P11: oral consolidation length in months (CONS-03): 12 (default), 18 or 24.
    oral_consolidation_months: int = 12
    # P12: normal corrected total calcium range, mmol/L (CA-02), unless the lab supplies one.
    calcium_low_mmol_l: float = 2.20
    calcium_high_mmol_l: float = 2.60
    # P13: pre-injection calcium must be at most this many days old (CA-05).
    calcium_max_age_days: int = 30
    # P14: "patients âgés" = age >= this on the injection date (CA-POST-01).
    elderly_age: int = 75
    # P15: CKD = eGFR below this; unknown renal function also triggers (CA-POST-01, REN-02).
    ckd_egfr_ml_min: float = 60.0
    ckd_unknown_triggers: bool = True
    renal_lookback_months: int = 12
    # P16: FDA boxed-warning monitoring also for Xgeva when eGFR < 30 or dialysis (CA-POST-02).
    boxed_warning_applies_to_xgeva: bool = True
    # P17: vitamin D gate: block below 20 ng/mL, warning below 30 (VITD-04).
    vitd_block_below_ng_ml: float = 20.0
    vitd_warn_below_ng_ml: float = 30.0
    # P18: follow-up 25-OH-D at loading end + 3 months when the level was < 10 ng/mL (VITD-06).
    vitd_followup_months: int = 3
    vitd_followup_below_ng_ml: float = 10.0
    # P19: dental follow-up every 6 months for every protocol; osteoporosis may be set to 12 (DENT-03).
    dental_interval_months: int = 6
    osteoporosis_dental_months: int = 6
    # Planning horizon: items from today to today + 24 months, plus anything overdue.
    horizon_months: int = 24

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RulesConfig:
        """Validate ``data`` (unknown keys, types, ranges) and build a config.

        Raises :class:`RuleInputError` whose ``field`` is the offending key.
        """
        if not isinstance(data, Mapping):
            raise RuleInputError("config", "must be an object")
        known = {f.name: f for f in fields(cls)}
        default = cls()
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in known:
                raise RuleInputError(str(key), "unknown configuration key")
            values[key] = _coerce(key, raw, getattr(default, key))
        config = replace(default, **values)
        config.validate()
        return config

    def validate(self) -> None:
        """Check cross-field constraints; raises :class:`RuleInputError`."""
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise RuleInputError(key, f"must be one of {', '.join(map(str, allowed))}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise RuleInputError("timezone", "unknown time zone") from exc
        if not 0 <= self.notify_hour <= 23:
            raise RuleInputError("notify_hour", "must be between 0 and 23")
        if not 0 < self.calcium_low_mmol_l < self.calcium_high_mmol_l:
            raise RuleInputError("calcium_high_mmol_l", "must be above calcium_low_mmol_l")
        if not 0 < self.vitd_block_below_ng_ml <= self.vitd_warn_below_ng_ml:
            raise RuleInputError("vitd_warn_below_ng_ml", "must be >= vitd_block_below_ng_ml")
        for key in ("op_escalation_days", "onco_dmab_escalation_days", "zol_escalation_days"):
            ladder = getattr(self, key)
            if list(ladder) != sorted(set(ladder)) or ladder[0] < 1:
                raise RuleInputError(key, "offsets must be strictly increasing and >= 1")
        for key in (
            "op_reminder_days",
            "op_window_days",
            "onco_reminder_days",
            "calcium_max_age_days",
            "renal_lookback_months",
            "vitd_followup_months",
            "dental_interval_months",
            "osteoporosis_dental_months",
            "horizon_months",
            "elderly_age",
        ):
            if getattr(self, key) < 1:
                raise RuleInputError(key, "must be >= 1")
        if self.op_window_days >= self.op_reminder_days:
            raise RuleInputError("op_window_days", "must be shorter than op_reminder_days")

    @property
    def onco_interval(self) -> tuple[int, int]:
        """(months, days) of the oncology base interval (P7)."""
        return (1, 0) if self.onco_monthly_interval == "1m" else (0, 28)


def _coerce(key: str, raw: object, default: object) -> object:
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise RuleInputError(key, "must be a boolean")
        return raw
    if isinstance(default, int):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise RuleInputError(key, "must be an integer")
        return raw
    if isinstance(default, float):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise RuleInputError(key, "must be a number")
        return float(raw)
    if isinstance(default, str):
        if not isinstance(raw, str):
            raise RuleInputError(key, "must be a string")
        return raw
    if isinstance(default, tuple):
        if not isinstance(raw, list | tuple) or len(raw) != len(default):
            raise RuleInputError(key, f"must be a list of {len(default)} integers")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise RuleInputError(key, "must contain integers only")
        return tuple(raw)
    raise RuleInputError(key, "unsupported value")  # pragma: no cover
