"""Properties: idempotence, stable keys, item windows; the package stays pure (no Django import);
every rule id of the table is implemented and tested."""

from __future__ import annotations

import ast
import re
from datetime import date, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.rules import Lab, PlanInput, compute_plan
from scheduling.rules.calendar import add_months
from scheduling.rules.items import days_late_on

from .test_rules_support import CONFIG, OP, calcium, course, dental, doses, facts, lab, med

RULES_DIR = Path(__file__).resolve().parents[2] / "scheduling" / "rules"
TESTS_DIR = Path(__file__).resolve().parent

RULE_IDS = (
    [f"TIME-0{i}" for i in range(1, 7)]
    + [f"OP-0{i}" for i in range(1, 9)]
    + [f"ONC-0{i}" for i in range(8)]
    + [f"ZOL-0{i}" for i in range(1, 9)]
    + [f"CONS-0{i}" for i in range(1, 6)]
    + [f"CA-0{i}" for i in range(1, 6)]
    + ["CA-POST-01", "CA-POST-02", "CA-POST-03", "CA-RISK-01"]
    + [f"VITD-0{i}" for i in range(1, 7)]
    + [f"DENT-0{i}" for i in range(1, 5)]
    + ["ONJ-01", "ONJ-02", "RISK-01", "RISK-02", "BIO-01", "DUP-01", "REN-01", "REN-02"]
)

op_days = st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31))


def _op_facts(first: date, gaps: list[int]) -> PlanInput:
    days = [first]
    for gap in gaps:
        days.append(days[-1] + timedelta(days=gap))
    return facts(
        courses=(course(start=first.isoformat()),),
        dose_list=doses(OP, *(d.isoformat() for d in days)),
        labs=calcium(days[-1].isoformat()),
        dental_events=(dental("exam", first.isoformat()),),
    )


@settings(max_examples=60, deadline=None)
@given(op_days, st.lists(st.integers(min_value=120, max_value=260), max_size=4), st.integers(0, 500))
def test_compute_plan_is_idempotent_and_keys_are_stable(first: date, gaps: list[int], offset: int) -> None:
    f = _op_facts(first, gaps)
    today = f.doses[-1].given_on + timedelta(days=offset)
    p1 = compute_plan(f, today=today, config=CONFIG)
    assert p1 == compute_plan(f, today=today, config=CONFIG)
    # Unrelated facts (a normal lab, a co-medication without flags) keep every key.
    more = PlanInput(
        f.patient,
        f.courses,
        f.doses,
        (*f.labs, lab("phosphate", 1.1, "mmol/L", today.isoformat())),
        f.dental,
        (*f.comedications, med("paracetamol", 3000, first.isoformat())),
    )
    p2 = compute_plan(more, today=today, config=CONFIG)
    assert [i.key for i in p1.items] == [i.key for i in p2.items]
    keys = [i.key for i in p1.items]
    assert len(keys) == len(set(keys))
    horizon = add_months(today, CONFIG.horizon_months)
    for it in p1.items:
        assert it.window_start <= it.due <= it.window_end
        assert it.reminder <= it.due
        assert it.due <= horizon
        assert it.blocked_by == () or it.status == "blocked" or it.status.startswith("overdue_")
        if it.due >= today:
            assert it.days_late == 0
        # What the readers derive from the stored status and due date (days late are not stored).
        assert it.days_late == days_late_on(it.status, it.due, today)


@settings(max_examples=40, deadline=None)
@given(op_days, st.integers(min_value=1, max_value=200))
def test_item_keeps_its_key_when_its_date_moves(first: date, shift: int) -> None:
    """Moving the last dose moves the next injection's due date but not its key."""
    a = _op_facts(first, [180])
    b = _op_facts(first, [180 + shift])
    today = first + timedelta(days=1)
    ka = {i.key: i.due for i in compute_plan(a, today=today, config=CONFIG).items if i.kind == "injection"}
    kb = {i.key: i.due for i in compute_plan(b, today=today, config=CONFIG).items if i.kind == "injection"}
    assert "injection:c1:3" in ka and "injection:c1:3" in kb
    if shift > 3:  # the end-of-month clamp can absorb up to 3 days (TIME-02)
        assert ka["injection:c1:3"] != kb["injection:c1:3"]


def test_facts_are_frozen_and_hashable() -> None:
    f = _op_facts(date(2026, 1, 15), [])
    assert hash(f) == hash(_op_facts(date(2026, 1, 15), []))
    lab_value = Lab("calcium_total", 2.3, "mmol/L", date(2026, 1, 1))
    try:
        lab_value.value = 1.0  # type: ignore[misc]  # frozen on purpose
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("Lab must be frozen")


def test_no_module_under_rules_imports_django_or_the_clock() -> None:
    for path in sorted(RULES_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                root = name.split(".")[0]
                assert root not in ("django", "rest_framework", "patients", "notifications", "backend"), (
                    f"{path.name} imports {name}"
                )
            if isinstance(node, ast.Attribute) and node.attr in ("today", "now", "utcnow"):
                assert not (isinstance(node.value, ast.Name) and node.value.id in ("date", "datetime")), (
                    f"{path.name} reads the clock"
                )


def test_every_rule_id_is_in_the_code_and_in_a_test() -> None:
    code = "\n".join(p.read_text(encoding="utf-8") for p in RULES_DIR.glob("*.py"))
    tests = "\n".join(
        p.read_text(encoding="utf-8") for p in TESTS_DIR.glob("test_rules_*.py") if p.name != Path(__file__).name
    )
    for rule in RULE_IDS:
        pattern = re.compile(re.escape(rule) + r"(?![0-9])")
        assert pattern.search(code), f"{rule} missing from scheduling/rules"
        assert pattern.search(tests), f"{rule} missing from the tests"
