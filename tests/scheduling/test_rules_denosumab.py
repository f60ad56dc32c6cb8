"""Denosumab 60 mg (OP-01 … OP-08), consolidation (CONS-01 … CONS-05) and DUP-01."""

from __future__ import annotations

import pytest

from scheduling.rules import RulesConfig
from scheduling.rules.calendar import add_days

from .test_rules_support import (
    ALN,
    ONCO,
    OP,
    ZOL5,
    D,
    calcium,
    codes,
    course,
    doses,
    facts,
    item,
    lab,
    plan,
)


def op_plan(today: str, *given: str, **kw: object) -> object:
    return plan(facts(courses=(course(**kw),), dose_list=doses(OP, *given)), today)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "due"),
    [
        pytest.param(("2026-01-15",), "2026-07-15", id="OP-01-six-months"),
        pytest.param(("2026-01-15", "2026-08-20"), "2027-02-20", id="OP-01-late-dose-re-anchors"),
        pytest.param(("2026-02-28", "2026-08-31"), "2027-02-28", id="OP-01-aug31-clamps-feb28"),
        pytest.param(("2027-02-28", "2027-08-31"), "2028-02-29", id="OP-01-aug31-leap-feb29"),
        pytest.param(("2027-08-31", "2028-02-29"), "2028-08-29", id="OP-01-no-chaining-after-clamp"),
    ],
)
def test_op_01_due_from_last_injection(given: tuple[str, ...], due: str) -> None:
    p = plan(facts(courses=(course(start=given[0]),), dose_list=doses(OP, *given)), given[-1])
    nxt = item(p, f"injection:c1:{len(given) + 1}")
    assert nxt.due == D(due)
    assert nxt.rule == "OP-01" and nxt.dose_mg == 60 and nxt.product == "denosumab"


def test_op_01_projection_anchored_on_last_dose() -> None:
    p = plan(facts(courses=(course(start="2026-08-31"),), dose_list=doses(OP, "2026-08-31")), "2026-09-01")
    dues = [i.due for i in p.items if i.kind == "injection"]
    assert dues == [D("2027-02-28"), D("2027-08-31"), D("2028-02-29"), D("2028-08-31")]


@pytest.mark.parametrize(
    ("today", "status", "level"),
    [
        pytest.param("2026-06-16", "scheduled", None, id="OP-04-scheduled-before-R"),
        pytest.param("2026-06-17", "reminder", None, id="OP-02-reminder-at-D-28"),
        pytest.param("2026-06-23", "reminder", None, id="OP-04-reminder-until-D-22"),
        pytest.param("2026-06-24", "window_open", None, id="OP-03-window-opens-D-21"),
        pytest.param("2026-07-14", "window_open", None, id="OP-04-window-open-D-1"),
        pytest.param("2026-07-15", "due", None, id="OP-04-due-on-D"),
        pytest.param("2026-07-16", "overdue_L1", "L1", id="OP-04-L1-D+1"),
        pytest.param("2026-08-05", "overdue_L1", "L1", id="OP-04-L1-D+21"),
        pytest.param("2026-08-06", "overdue_L2", "L2", id="OP-04-L2-D+22"),
        pytest.param("2026-08-12", "overdue_L2", "L2", id="OP-04-L2-D+28"),
        pytest.param("2026-08-13", "overdue_L3", "L3", id="OP-04-L3-D+29"),
        pytest.param("2026-11-04", "overdue_L3", "L3", id="OP-04-L3-D+112"),
        pytest.param("2026-11-05", "overdue_L4", "L4", id="OP-04-L4-D+113"),
    ],
)
def test_op_04_status_ladder(today: str, status: str, level: str | None) -> None:
    # calcium drawn "today" so no CA-05 block hides the ladder status
    f = facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium(today), dental_events=())
    p = plan(f, today)
    injection = item(p, "injection:c1:2")
    assert (injection.status, injection.level) == (status, level)
    assert injection.reminder == D("2026-06-17") and injection.window_start == D("2026-06-24")
    assert injection.window_end == D("2026-08-05")
    assert dict(injection.escalation) == {
        "L1": D("2026-07-16"),
        "L2": D("2026-08-06"),
        "L3": D("2026-08-13"),
        "L4": D("2026-11-05"),
    }


@pytest.mark.parametrize(
    ("today", "flag", "severity", "notify"),
    [
        pytest.param("2026-07-16", "OVERDUE", "W", ("patient", "nurse"), id="OP-04-L1-flag"),
        pytest.param("2026-08-06", "OVERDUE_OUTSIDE_WINDOW", "H", ("physician",), id="OP-04-L2-flag"),
        pytest.param("2026-08-13", "OVERDUE_INJECT_ASAP", "C", ("physician", "specialist"), id="OP-04-L3-flag"),
        pytest.param("2026-11-05", "DISCONTINUATION_PRESUMED", "C", ("physician", "specialist"), id="OP-04-L4-flag"),
    ],
)
def test_op_04_ladder_flags_and_recipients(today: str, flag: str, severity: str, notify: tuple[str, ...]) -> None:
    p = plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium(today)), today)
    injection = item(p, "injection:c1:2")
    assert injection.notify == notify and injection.severity == severity
    found = [f for f in p.flags if f.code == flag]
    assert found and found[0].severity == severity and found[0].rule == "OP-04"


def test_op_04_l4_at_d_plus_113_requires_consolidation_today() -> None:
    # Hand check: D = 2026-07-15; D + 113 = 2026-11-05 (16 + 31 + 30 + 31 + 5). CONS-01: due that day.
    p = plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-11-05")), "2026-11-05")
    assert {"DISCONTINUATION_PRESUMED", "CONSOLIDATION_REQUIRED", "SPECIALIST_REFERRAL"} <= codes(p)
    cons = item(p, "consolidation:c1")
    assert (cons.protocol, cons.dose_mg, cons.due, cons.status, cons.rule) == (
        ZOL5,
        5,
        D("2026-11-05"),
        "due",
        "CONS-01",
    )
    assert not [i for i in p.items if i.kind == "injection" and i.ordinal and i.ordinal > 2]


def test_cons_05_consolidation_ladder_runs_from_its_own_due_date() -> None:
    # The consolidation due date stays at D + 113 = 2026-11-05; 22 days later it is L2.
    p = plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-11-27")), "2026-11-27")
    cons = item(p, "consolidation:c1")
    assert cons.due == D("2026-11-05") and cons.status == "overdue_L2" and cons.days_late == 22
    assert dict(cons.escalation)["L4"] == add_days(D("2026-11-05"), 113)
    assert any(f.code == "OVERDUE_OUTSIDE_WINDOW" and f.rule == "CONS-05" for f in p.flags)


def test_op_03_window_and_early_injection_flag() -> None:
    from scheduling.rules import evaluate_gates

    f = facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-06-01"))
    early = evaluate_gates(f, on=D("2026-06-20"), protocol=OP, config=RulesConfig())
    assert any(x.code == "EARLY_INJECTION" and x.rule == "OP-03" and not x.blocks for x in early)
    on_time = evaluate_gates(f, on=D("2026-06-24"), protocol=OP, config=RulesConfig())
    assert "EARLY_INJECTION" not in {x.code for x in on_time}


def test_op_05_rebound_risk_text_and_window() -> None:
    p = plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-06-01")
    flag = next(f for f in p.flags if f.code == "REBOUND_RISK")
    assert flag.rule == "OP-05" and flag.severity == "W"
    assert flag.message("fr") == (
        "il existe un risque de rebond fracturaire (fractures vertébrales) si les "
        "injections de dénosumab sont espacées de plus de 6 mois."
    )
    assert flag.param_map["rebound_from"] == "2026-08-15" and flag.param_map["rebound_to"] == "2027-09-15"
    assert flag.param_map["overdue"] is False
    late = plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-07-16")
    assert next(f for f in late.flags if f.code == "REBOUND_RISK").param_map["overdue"] is True


@pytest.mark.parametrize(
    ("given", "today", "due", "severity"),
    [
        pytest.param(("2026-01-15",), "2026-06-01", "2028-01-15", None, id="OP-06-provisional-first+24m"),
        pytest.param(
            ("2026-01-15", "2026-07-15", "2027-01-15", "2027-07-15"),
            "2027-07-16",
            "2028-01-15",
            "W",
            id="OP-06-after-4th-min-of-24m-and-5th-due",
        ),
        pytest.param(
            ("2026-01-15", "2026-09-15", "2027-04-15", "2027-11-15"),
            "2027-11-16",
            "2028-01-15",
            "W",
            id="OP-06-late-doses-first+24m-earlier",
        ),
        pytest.param(
            ("2026-01-15", "2026-03-01", "2026-05-01", "2026-07-01"),
            "2026-07-02",
            "2027-01-01",
            "W",
            id="OP-06-fifth-due-earlier",
        ),
        pytest.param(
            ("2026-01-15", "2026-07-15", "2027-01-15", "2027-07-15", "2028-01-15"),
            "2028-01-16",
            "2028-01-15",
            "H",
            id="OP-06-H-when-fifth-given-first",
        ),
    ],
)
def test_op_06_reevaluation(given: tuple[str, ...], today: str, due: str, severity: str | None) -> None:
    p = plan(facts(courses=(course(),), dose_list=doses(OP, *given)), today)
    reeval = item(p, "reevaluation:c1:1")
    assert reeval.due == D(due) and reeval.rule == "OP-06"
    flag = [f for f in p.flags if f.code == "REEVALUATION_DUE"]
    assert (flag[0].severity if flag else None) == severity


def test_op_07_supplementation_info() -> None:
    p = plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15")), "2026-06-01")
    assert any(f.code == "CALCIUM_VITD_INTAKE" and f.rule == "OP-07" and f.severity == "I" for f in p.flags)


@pytest.mark.parametrize(
    ("stop", "consolidation", "due", "rule"),
    [
        pytest.param(("2026-06-01", None), ZOL5, "2026-07-15", "CONS-01", id="OP-08-CONS-01-zol-at-last+6m"),
        pytest.param(("2026-09-01", None), ZOL5, "2026-09-01", "CONS-01", id="CONS-01-passed-date-due-on-stop"),
        pytest.param(("2026-06-01", ALN), ALN, "2026-07-15", "CONS-03", id="CONS-03-alendronate"),
    ],
)
def test_op_08_stop_cancels_denosumab_and_opens_consolidation(
    stop: tuple[str, str | None], consolidation: str, due: str, rule: str
) -> None:
    p = plan(facts(courses=(course(stop=stop),), dose_list=doses(OP, "2026-01-15")), stop[0])
    assert not [i for i in p.items if i.kind == "injection"]
    cons = item(p, "consolidation:c1")
    assert (cons.protocol, cons.due, cons.rule) == (consolidation, D(due), rule)
    assert {"DMAB_STOPPED", "CONSOLIDATION_REQUIRED"} <= codes(p)
    if consolidation == ALN:
        assert cons.until == D("2027-07-15")  # P11: 12 months


def test_cons_03_oral_length_from_config() -> None:
    cfg = RulesConfig.from_mapping({"oral_consolidation_months": 18})
    p = plan(facts(courses=(course(stop=("2026-06-01", ALN)),), dose_list=doses(OP, "2026-01-15")), "2026-06-01", cfg)
    assert item(p, "consolidation:c1").until == D("2028-01-15")


def test_cons_02_ctx_checks_after_infusion_and_early_second_zol() -> None:
    zol = doses(ZOL5, "2026-07-20", course_key=None, prefix="z")
    f = facts(courses=(course(stop=("2026-06-01", None)),), dose_list=doses(OP, "2026-01-15") + zol)
    p = plan(f, "2026-07-21")
    assert not [i for i in p.items if i.kind == "consolidation"]
    ctx_dues = [i.due for i in p.items if i.kind == "ctx_check"]
    assert ctx_dues == [D("2026-10-20"), D("2027-01-20"), D("2027-04-20"), D("2027-07-20")]
    assert all(i.rule == "CONS-02" for i in p.items if i.kind == "ctx_check")
    high = facts(courses=f.courses, dose_list=f.doses, labs=(lab("ctx", 0.41, "ng/mL", "2026-10-21"),))
    p2 = plan(high, "2026-10-22")
    flag = next(x for x in p2.flags if x.code == "EARLY_SECOND_ZOL")
    assert flag.severity == "H" and flag.param_map["ctx"] == 0.41
    assert "ctx_check:c1:1" not in {i.key for i in p2.items}
    low = facts(courses=f.courses, dose_list=f.doses, labs=(lab("ctx", 300, "pg/mL", "2026-10-21"),))
    assert "EARLY_SECOND_ZOL" not in codes(plan(low, "2026-10-22"))  # 0.300 is not > 0.300


def test_cons_04_zoledronic_5mg_blocked_below_35() -> None:
    pt_labs = (*calcium("2026-07-15"), lab("crcl", 34.9, "mL/min", "2026-07-01"))
    p = plan(
        facts(courses=(course(stop=("2026-06-01", None)),), dose_list=doses(OP, "2026-01-15"), labs=pt_labs),
        "2026-07-15",
    )
    cons = item(p, "consolidation:c1")
    assert cons.status == "blocked" and "ZOL5_CONTRAINDICATED_RENAL" in cons.blocked_by
    flag = next(f for f in p.flags if f.code == "ZOL5_CONTRAINDICATED_RENAL")
    assert flag.rule == "CONS-04" and flag.blocks and not flag.override_allowed
    ok = plan(
        facts(
            courses=(course(stop=("2026-06-01", None)),),
            dose_list=doses(OP, "2026-01-15"),
            labs=(*calcium("2026-07-15"), lab("crcl", 35.0, "mL/min", "2026-07-01")),
        ),
        "2026-07-15",
    )
    assert item(ok, "consolidation:c1").status == "due"


def test_dup_01_switch_to_oncology_cancels_prolia_without_consolidation() -> None:
    courses = (course(), course(ONCO, "2026-05-01", key="c2"))
    p = plan(facts(courses=courses, dose_list=doses(OP, "2026-01-15")), "2026-05-02")
    assert not [i for i in p.items if i.course_key == "c1" and i.kind in ("injection", "consolidation")]
    assert "DMAB_SWITCH_NO_CONSOLIDATION" in codes(p)
    assert "CONSOLIDATION_REQUIRED" not in codes(p)
    assert item(p, "injection:c2:1").due == D("2026-05-01")


def test_dup_01_prolia_while_xgeva_active_is_blocked_without_override() -> None:
    from scheduling.rules import evaluate_gates

    courses = (course(), course(ONCO, "2026-05-01", key="c2"))
    f = facts(courses=courses, dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-07-10"))
    flags = evaluate_gates(f, on=D("2026-07-15"), protocol=OP, config=RulesConfig(), course_key="c1")
    dup = next(x for x in flags if x.code == "DUPLICATE_DENOSUMAB_BLOCK")
    assert dup.blocks and not dup.override_allowed and dup.severity == "C" and dup.rule == "DUP-01"


def test_dup_01_denosumab_with_bisphosphonate_course() -> None:
    courses = (course(ONCO, "2026-01-01"), course("zoledronic_onco_4mg", "2026-01-01", key="c2"))
    p = plan(facts(courses=courses), "2026-01-02")
    assert any(f.code == "DMAB_BISPHOSPHONATE_CONCOMITANT" and f.severity == "H" for f in p.flags)


def test_late_dose_re_anchors_scenario() -> None:
    # Hand check: 2026-01-15 then late on 2026-08-20 (L2, 36 days late): next = 2027-02-20, not 2027-01-15.
    p = plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15", "2026-08-20")), "2026-08-21")
    nxt = item(p, "injection:c1:3")
    assert nxt.due == D("2027-02-20") and nxt.status == "scheduled"
    assert "injection:c1:2" not in {i.key for i in p.items}


@pytest.mark.parametrize(
    ("today", "status", "blocked_by"),
    [
        pytest.param("2026-06-17", "reminder", (), id="CA-05-reminder-not-gated"),
        pytest.param("2026-06-24", "blocked", ("CALCIUM_CHECK_REQUIRED",), id="CA-05-window-open-becomes-blocked"),
        pytest.param("2026-07-15", "blocked", ("CALCIUM_CHECK_REQUIRED",), id="CA-05-due-becomes-blocked"),
        pytest.param("2026-07-16", "overdue_L1", ("CALCIUM_CHECK_REQUIRED",), id="OP-04-overdue-keeps-ladder-status"),
        pytest.param("2026-08-13", "overdue_L3", ("CALCIUM_CHECK_REQUIRED",), id="OP-04-L3-keeps-ladder-status"),
    ],
)
def test_blocked_status_decision(today: str, status: str, blocked_by: tuple[str, ...]) -> None:
    # The only calcium is from 2026-01-08 (CA-05 needs one drawn within 30 days).
    p = plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-01-08")), today)
    injection = item(p, "injection:c1:2")
    assert (injection.status, injection.blocked_by) == (status, blocked_by)
