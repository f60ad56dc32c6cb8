"""Builders shared by the rules tests (pure Python; no Django)."""

from __future__ import annotations

from datetime import date

from scheduling.rules import (
    Course,
    DentalEvent,
    Dose,
    Lab,
    PatientFacts,
    Plan,
    PlanInput,
    PlanItem,
    RulesConfig,
    Stop,
    compute_plan,
)
from scheduling.rules.facts import Comedication

CONFIG = RulesConfig()
D = date.fromisoformat
OP = "denosumab_op_60mg_q6m"
ONCO = "denosumab_onco_120mg"
ZOL = "zoledronic_onco_4mg"
ZOL5 = "zoledronic_op_5mg"
ALN = "alendronate_op_70mg_weekly"
VITD = "vitamin_d_50000iu"


def patient(**kw: object) -> PatientFacts:
    base: dict[str, object] = {"birth_date": D("1958-04-12"), "sex": "F", "egfr_ml_min": 82.0}
    base.update(kw)
    return PatientFacts(**base)  # type: ignore[arg-type]  # test builder over keyword args


def course(
    protocol: str = OP,
    start: str = "2026-01-15",
    key: str = "c1",
    stop: tuple[str, str | None] | None = None,
    **kw: object,
) -> Course:
    return Course(key, protocol, D(start), Stop(D(stop[0]), stop[1]) if stop else None, **kw)  # type: ignore[arg-type]


def doses(protocol: str, *days: str, course_key: str | None = "c1", prefix: str = "d") -> tuple[Dose, ...]:
    return tuple(Dose(f"{prefix}{i}", protocol, D(day), course_key) for i, day in enumerate(days, 1))


def calcium(day: str, value: float = 2.35, albumin: float | None = None) -> tuple[Lab, ...]:
    labs = (Lab("calcium_total", value, "mmol/L", D(day)),)
    return labs + ((Lab("albumin", albumin, "g/L", D(day)),) if albumin is not None else ())


def lab(test: str, value: float, unit: str, day: str) -> Lab:
    return Lab(test, value, unit, D(day))


def dental(event: str, day: str) -> DentalEvent:
    return DentalEvent(event, D(day))


def med(name: str, mg: float | None, start: str, cls: str | None = None) -> Comedication:
    return Comedication(name, cls, mg, D(start))


def facts(
    *,
    pt: PatientFacts | None = None,
    courses: tuple[Course, ...] = (),
    dose_list: tuple[Dose, ...] = (),
    labs: tuple[Lab, ...] = (),
    dental_events: tuple[DentalEvent, ...] = (),
    meds: tuple[Comedication, ...] = (),
) -> PlanInput:
    return PlanInput(pt or patient(), courses, dose_list, labs, dental_events, meds)


def plan(f: PlanInput, today: str, config: RulesConfig = CONFIG) -> Plan:
    return compute_plan(f, today=D(today), config=config)


def item(p: Plan, key: str) -> PlanItem:
    found = [i for i in p.items if i.key == key]
    assert found, f"{key} not in {[i.key for i in p.items]}"
    return found[0]


def codes(p: Plan) -> set[str]:
    return {f.code for f in p.flags}


def test_builders_produce_the_brief_example_plan() -> None:
    p = plan(facts(courses=(course(),), dose_list=doses(OP, "2026-01-15"), labs=calcium("2026-01-08")), "2026-06-01")
    assert item(p, "injection:c1:2").due == D("2026-07-15")
