"""Adherence windows (web.adherence): pure, table-driven, rule ids from the protocol table."""

from __future__ import annotations

from datetime import date

import pytest

from scheduling.rules.config import RulesConfig
from web.adherence import CourseFact, DoseFact, adherence_share, dose_windows

CONFIG = RulesConfig()
OP, ONCO, ZOL4, ZOL5 = "denosumab_op_60mg_q6m", "denosumab_onco_120mg", "zoledronic_onco_4mg", "zoledronic_op_5mg"


def doses(protocol: str, *days: str, course: str = "c1") -> list[DoseFact]:
    return [DoseFact(f"{course}-{k}", protocol, date.fromisoformat(d), course) for k, d in enumerate(days)]


@pytest.mark.parametrize(
    ("second", "inside", "late", "early"),
    [
        ("2026-07-15", True, False, False),  # OP-01: due on the 6-month anniversary
        ("2026-08-05", True, False, False),  # OP-03: +21 days is still inside
        ("2026-08-06", False, True, False),  # +22 days: late
        ("2026-06-24", True, False, False),  # -21 days
        ("2026-06-23", False, False, True),  # -22 days: early
    ],
)
def test_denosumab_60_window_is_plus_or_minus_21_days(second: str, inside: bool, late: bool, early: bool) -> None:
    (w,) = dose_windows(doses(OP, "2026-01-15", second), [CourseFact("c1", OP)], config=CONFIG)
    assert w.due == date(2026, 7, 15)
    assert (w.inside, w.late, w.early) == (inside, late, early)


def test_month_end_anchor_follows_time_02() -> None:
    (w,) = dose_windows(doses(OP, "2025-08-31", "2026-02-28"), [CourseFact("c1", OP)], config=CONFIG)
    assert w.due == date(2026, 2, 28) and w.inside


def test_first_dose_of_each_course_is_not_counted() -> None:
    facts = doses(OP, "2024-01-10", "2024-07-10") + doses(OP, "2026-01-10", course="c2")
    windows = dose_windows(facts, [CourseFact("c1", OP), CourseFact("c2", OP)], config=CONFIG)
    assert [w.dose.key for w in windows] == ["c1-1"]


def test_oncology_windows_come_from_the_protocol_table() -> None:
    # ONC-01: 4 weeks by default; window = the reminder week before, the L1 week after (ONC-02).
    on_time, late = dose_windows(
        doses(ONCO, "2026-01-01", "2026-02-05", "2026-03-20"), [CourseFact("c1", ONCO)], config=CONFIG
    )
    assert on_time.due == date(2026, 1, 29) and on_time.inside
    assert late.due == date(2026, 3, 5) and late.late


def test_zoledronic_4_is_quarterly_after_a_good_response() -> None:
    (w,) = dose_windows(
        doses(ZOL4, "2026-01-01", "2026-04-03"), [CourseFact("c1", ZOL4, response="good")], config=CONFIG
    )
    assert w.due == date(2026, 4, 1) and w.inside  # ZOL-04


def test_consolidation_is_due_six_months_after_the_last_denosumab_or_at_the_stop() -> None:
    # CONS-01: the later of last dose + 6 months and the stop date.
    facts = [*doses(OP, "2025-01-10", "2025-07-10"), DoseFact("z", ZOL5, date(2026, 3, 1), "c2")]
    courses = [CourseFact("c1", OP, stop_date=date(2026, 2, 20)), CourseFact("c2", ZOL5)]
    windows = dose_windows(facts, courses, config=CONFIG)
    zol = next(w for w in windows if w.dose.key == "z")
    assert zol.due == date(2026, 2, 20) and zol.inside


def test_share_counts_doses_given_in_the_period_only() -> None:
    windows = dose_windows(
        doses(OP, "2023-01-10", "2023-07-10", "2024-03-10", "2024-09-10"), [CourseFact("c1", OP)], config=CONFIG
    )
    assert adherence_share(windows, since=date(2024, 1, 1), until=date(2024, 12, 31)) == (1, 2)
    assert adherence_share(windows, since=date(2023, 1, 1), until=date(2024, 12, 31)) == (2, 3)


def test_doses_of_different_patients_never_chain() -> None:
    a = [DoseFact("a", OP, date(2026, 1, 1), None, patient_key="1")]
    b = [DoseFact("b", OP, date(2026, 7, 1), None, patient_key="2")]
    assert dose_windows(a + b, [], config=CONFIG) == []
