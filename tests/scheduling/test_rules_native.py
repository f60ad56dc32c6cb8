"""The compiled rules (``scheduling/rules/_native.py``): used only when built from the very sources
being imported, and giving exactly the plans the plain modules give.

The test command builds them before its test runs and sets ``CARNET_REQUIRE_NATIVE=1``; its SQLite
run turns them off (``CARNET_NATIVE_RULES=0``: every other test runs the plain modules there) and
its PostgreSQL run keeps them on (every other test runs the compiled ones). Without the build, the
tests that need it are skipped, and fail under ``CARNET_REQUIRE_NATIVE=1``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from patients.demo import StoryBuilder, stories_insert
from patients.models import Patient
from scheduling import selectors, services
from scheduling.rules import PROTOCOL_IDS, _native, engine
from scheduling.rules import facts as rf
from tests.factories import CareTeamFactory

RULES_DIR = Path(_native.__file__).resolve().parent
REQUIRED = os.environ.get("CARNET_REQUIRE_NATIVE") == "1"


def _build_or_skip() -> Path:
    built = _native.build_path()
    if not (built / _native.MARKER).is_file():
        if REQUIRED:
            pytest.fail(f"no compiled rules for these sources in {built}: python -m scheduling.compile_rules build")
        pytest.skip("the rules are not compiled here (python -m scheduling.compile_rules build)")
    return built


def _require_compiled() -> None:
    """Skip unless this process runs the compiled rules; fail when they are required and missing."""
    if not _native.active():
        if REQUIRED and _native.enabled():
            pytest.fail("the compiled rules are not in use though they are required (CARNET_REQUIRE_NATIVE=1)")
        pytest.skip("the plain rules run in this process (CARNET_NATIVE_RULES=0 or no build)")


def _tree_copy(tmp_path: Path) -> Path:
    """A copy of the rules package alone, importable as ``scheduling.rules`` from ``tmp_path``."""
    (tmp_path / "scheduling").mkdir(parents=True)
    (tmp_path / "scheduling" / "__init__.py").write_text("")
    shutil.copytree(RULES_DIR, tmp_path / "scheduling" / "rules", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "scheduling" / "rules"


def _engine_file(tree: Path, **env: str) -> str:
    """Which file ``scheduling.rules.engine`` comes from in a fresh interpreter importing ``tree``."""
    return _python(tree, "import scheduling.rules.engine as e; print(e.__file__)", **env)


def _python(tree: Path, code: str, **env: str) -> str:
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.strip()


def test_the_hash_names_the_compiled_sources(tmp_path: Path) -> None:
    rules = _tree_copy(tmp_path)
    assert _native.sources_hash(rules) == _native.sources_hash(RULES_DIR)
    assert "engine" in _native.compiled_modules(rules)
    assert not {"__init__", "_native", "preview"} & set(_native.compiled_modules(rules))
    # A module left plain does not name the build; a compiled one does, to the byte.
    (rules / "preview.py").write_text((rules / "preview.py").read_text() + "\n# a comment\n")
    assert _native.sources_hash(rules) == _native.sources_hash(RULES_DIR)
    (rules / "labs.py").write_text((rules / "labs.py").read_text() + " ")
    assert _native.sources_hash(rules) != _native.sources_hash(RULES_DIR)


def test_the_build_for_these_sources_is_used_and_a_stale_one_never(tmp_path: Path) -> None:
    built = _build_or_skip()
    rules = _tree_copy(tmp_path)
    where = {_native.DIR_ENV: str(built.parent), _native.ENABLED_ENV: "1"}
    compiled = _engine_file(tmp_path, **where)
    assert compiled.startswith(str(built)) and not compiled.endswith(".py"), compiled
    # Turned off: the plain module, though the build is there.
    assert _engine_file(tmp_path, **{**where, _native.ENABLED_ENV: "0"}) == str(rules / "engine.py")
    # One source edited since the build (a rule changed): its build no longer matches, nothing
    # compiled from the old text runs, and the edited module does.
    engine_py = rules / "engine.py"
    engine_py.write_text(engine_py.read_text() + "\nEDITED = True\n")
    assert _engine_file(tmp_path, **where) == str(engine_py)
    # And the process says so (the worker logs it at start, backend/celery.py).
    said = _python(tmp_path, "from scheduling.rules import _native; print(_native.describe())", **where)
    assert said.startswith("the rules run as plain Python: no build for these sources"), said


def test_the_worker_says_which_rules_it_runs(caplog: pytest.LogCaptureFixture) -> None:
    from backend.celery import _log_rules

    with caplog.at_level(logging.INFO, logger="carnet.worker"):
        _log_rules()
    (record,) = [r for r in caplog.records if r.name == "carnet.worker"]
    assert record.getMessage() == _native.describe()
    if _native.active():
        assert record.levelno == logging.INFO and record.getMessage().startswith("the rules run compiled (mypyc")
    else:
        assert record.levelno == logging.WARNING and "plain Python" in record.getMessage()


def test_a_build_without_its_completion_mark_is_ignored(tmp_path: Path) -> None:
    built = _build_or_skip()
    half = tmp_path / "builds" / built.name
    shutil.copytree(built, half)
    (half / _native.MARKER).unlink()
    _tree_copy(tmp_path / "tree")
    found = _engine_file(tmp_path / "tree", **{_native.DIR_ENV: str(half.parent), _native.ENABLED_ENV: "1"})
    assert found.endswith("engine.py")


def test_a_build_that_does_not_load_leaves_the_plain_rules(tmp_path: Path) -> None:
    rules = _tree_copy(tmp_path / "tree")
    suffix = _native.SUFFIX
    damaged = tmp_path / "builds" / f"rules-{_native.sources_hash(rules)}"
    (damaged / "scheduling" / "rules").mkdir(parents=True)
    (damaged / f"0123456789abcdef0123__mypyc{suffix}").write_bytes(b"not a shared library")
    (damaged / "scheduling" / "rules" / f"engine{suffix}").write_bytes(b"not a shared library")
    (damaged / _native.MARKER).write_text("engine\n")
    where = {_native.DIR_ENV: str(damaged.parent), _native.ENABLED_ENV: "1"}
    assert _engine_file(tmp_path / "tree", **where) == str(rules / "engine.py")


def _plain_rules() -> ModuleType:
    """The plain modules of the rules, loaded beside the compiled ones under another name."""
    name = "_carnet_plain_rules"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, RULES_DIR / "__init__.py", submodule_search_locations=[str(RULES_DIR)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    before = os.environ.get(_native.ENABLED_ENV)
    os.environ[_native.ENABLED_ENV] = "0"  # this copy's ``activate`` leaves its plain modules
    try:
        sys.modules[name] = package
        spec.loader.exec_module(package)
    finally:
        if before is None:
            del os.environ[_native.ENABLED_ENV]
        else:
            os.environ[_native.ENABLED_ENV] = before
    assert sys.modules[f"{name}.engine"].__file__ == str(RULES_DIR / "engine.py")
    return package


def _classes(package: str) -> dict[str, type]:
    found: dict[str, type] = {}
    for module in ("facts", "config", "items", "flags", "protocols"):
        found.update({k: v for k, v in vars(sys.modules[f"{package}.{module}"]).items() if dataclasses.is_dataclass(v)})
    return found


def _convert(value: Any, classes: dict[str, type]) -> Any:
    """``value`` rebuilt from the other rules' classes (compiled code checks the classes it gets)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f for f in dataclasses.fields(value) if f.init]
        return classes[type(value).__name__](**{f.name: _convert(getattr(value, f.name), classes) for f in fields})
    if isinstance(value, tuple):
        return tuple(_convert(v, classes) for v in value)
    return value


def _dump(value: Any) -> Any:
    """Every value of a plan, with its type: ``60`` and ``60.0`` differ here, as in a digest."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, [(f.name, _dump(getattr(value, f.name))) for f in dataclasses.fields(value)])
    if isinstance(value, tuple | list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return [(_dump(k), _dump(v)) for k, v in value.items()]
    return f"{type(value).__name__}:{value!r}"


@pytest.mark.django_db
def test_compiled_and_plain_rules_give_the_same_plans_and_digests() -> None:
    _require_compiled()
    plain = _plain_rules()
    plain_engine = sys.modules[f"{plain.__name__}.engine"]
    plain_digest = importlib.import_module(f"{plain.__name__}.digest")
    plain_classes = _classes(plain.__name__)
    team = CareTeamFactory(timezone="Europe/Paris")
    builder = StoryBuilder(team=team, nurse=None, physician=None, seed=8)
    with transaction.atomic():
        ids = stories_insert([builder.build() for _ in range(150)])
    patients = list(Patient.objects.filter(pk__in=ids))
    assert len(patients) == 150
    config = selectors.rules_config()
    plain_config = _convert(config, plain_classes)
    start = timezone.localdate()
    kinds: set[str] = set()
    compared = 0
    for shift in (0, 45, 200, 800):  # today, and days when doses fall due, late, long missed
        today = start + timedelta(days=shift)
        inputs = selectors.plan_inputs(patients, today_by_patient=dict.fromkeys(ids, today))
        for pk in ids:
            facts = inputs[pk]
            compiled_plan = engine.compute_plan(facts, today=today, config=config)
            plain_plan = plain_engine.compute_plan(_convert(facts, plain_classes), today=today, config=plain_config)
            assert type(compiled_plan).__module__ == "scheduling.rules.items"
            assert _dump(compiled_plan) == _dump(plain_plan), f"patient {pk} on {today}"
            # The digest too is compiled code (rules.digest), given the same salt as services gives it.
            digest = services.plan_digest(compiled_plan, config)
            assert digest == plain_digest.plan_digest(plain_plan, services._salt(config))
            kinds.update(item.kind for item in compiled_plan.items)
            kinds.update(flag.code for flag in compiled_plan.flags)
            compared += 1
    assert compared == 600
    # The stories reach every kind of item and flags of every rule module: all of them compared.
    items = {"calcium_check", "consolidation", "ctx_check", "dental_visit", "injection", "reevaluation"}
    items |= {"vitamin_d_dose", "vitamin_d_test"}
    flags = {"HYPOCALCAEMIA_BLOCK", "VITD_GATE_BLOCK", "ZOL_DOSE_RENAL", "DMAB_BISPHOSPHONATE_CONCOMITANT"}
    flags |= {"OVERDUE_INJECT_ASAP", "REBOUND_RISK_ONCO", "ONJ_RISK_CORTICOSTEROIDS", "SPECIALIST_REFERRAL"}
    assert items | flags <= kinds, sorted(items | flags - kinds)


@pytest.mark.django_db
def test_compiled_and_plain_assembly_give_the_same_facts() -> None:
    """``rules.assemble`` turns the fact rows into the same values compiled as plain."""
    _require_compiled()
    plain = _plain_rules()
    plain_assemble = importlib.import_module(f"{plain.__name__}.assemble")
    team = CareTeamFactory(timezone="Europe/Paris")
    builder = StoryBuilder(team=team, nurse=None, physician=None, seed=11)
    with transaction.atomic():
        ids = stories_insert([builder.build() for _ in range(60)])
    patients = list(Patient.objects.filter(pk__in=ids))
    today = dict.fromkeys(ids, timezone.localdate())
    rows = [selectors._fact_rows(name, ids) for name in ("courses", "doses", "labs", "dental", "comedications")]
    config = selectors.rules_config()
    compiled = selectors.plan_inputs(patients, today_by_patient=today)
    plain_inputs = plain_assemble.plan_inputs_from_rows(
        patients, today, _convert(config, _classes(plain.__name__)), *rows
    )
    assert type(compiled[ids[0]]).__module__ == "scheduling.rules.facts"
    assert sum(len(v.labs) + len(v.doses) for v in compiled.values()) > 60 * 5
    assert {pk: _dump(v) for pk, v in compiled.items()} == {pk: _dump(v) for pk, v in plain_inputs.items()}


# --- random facts: the compiled rules check their argument types at run time, the plain ones do
# not, so facts the demo stories never make (odd units and values, stops without consolidation,
# doses naming no course, refused combinations) are compared too, errors included.

PROTOCOLS = [p for p in PROTOCOL_IDS if p != "vitamin_d_50000iu"]
DAYS = st.dates(min_value=date(2016, 1, 1), max_value=date(2027, 12, 31))


CONSOLIDATIONS = st.none() | st.sampled_from(["zoledronic_op_5mg", "alendronate_op_70mg_weekly"])
MEDICINES = st.sampled_from(["prednisone", "bevacizumab", "adalimumab", "methotrexate", "cinacalcet", "paracetamol"])
# Floats where the facts say float, integral ones too: both producers of facts convert
# (``selectors.plan_inputs`` from Decimal, ``rules.preview._num`` from JSON). An int given where
# a float is typed is the one difference found: the compiled class stores 0.0, the plain one 0.
# Lab values above 0, as both producers require (the booklet's plausible ranges, the preview): a
# zero creatinine is refused there, and crashed Cockcroft-Gault (this test found it).
NUMBERS = st.integers(1, 400).map(float) | st.floats(0.1, 400, allow_nan=False)
OPTIONAL_FLOATS = st.none() | st.floats(5, 140, allow_nan=False)


@st.composite
def _random_facts(draw: st.DrawFn) -> tuple[dict[str, Any], date]:
    """The facts as plain data (built into either rules' classes by ``_build``) and a today."""
    courses = []
    for i in range(draw(st.integers(1, 3))):
        stop = draw(st.none() | st.tuples(DAYS, CONSOLIDATIONS))
        courses.append(
            {
                "key": f"c{i}",
                "protocol": draw(st.sampled_from(PROTOCOLS)),
                "start_date": draw(DAYS),
                "stop": stop,
                "response": draw(st.none() | st.sampled_from(rf.RESPONSES)),
                "requested_interval_months": draw(st.none() | st.integers(1, 12)),
            }
        )
    keys = st.none() | st.sampled_from([c["key"] for c in courses] or ["c9"])
    doses = []
    for _ in range(draw(st.integers(0, 12))):
        doses.append((draw(DAYS), draw(st.sampled_from([*PROTOCOLS, "vitamin_d_50000iu"])), draw(keys)))
    labs = []
    for _ in range(draw(st.integers(0, 8))):
        test = draw(st.sampled_from(sorted(rf.LAB_UNITS)))
        labs.append((test, draw(NUMBERS), draw(st.sampled_from(rf.LAB_UNITS[test])), draw(DAYS)))
    dental = [(draw(st.sampled_from(rf.DENTAL_EVENTS)), draw(DAYS)) for _ in range(draw(st.integers(0, 4)))]
    meds = []
    for _ in range(draw(st.integers(0, 3))):
        drug_class = draw(st.none() | st.sampled_from(rf.COMEDICATION_CLASSES))
        meds.append((draw(MEDICINES), drug_class, draw(OPTIONAL_FLOATS), draw(DAYS), draw(st.none() | DAYS)))
    patient = {
        "birth_date": draw(st.dates(min_value=date(1925, 1, 1), max_value=date(2005, 12, 31))),
        "sex": draw(st.sampled_from(["F", "M"])),
        "egfr_ml_min": draw(OPTIONAL_FLOATS),
        "crcl_ml_min": draw(OPTIONAL_FLOATS),
        "weight_kg": draw(OPTIONAL_FLOATS),
        "dialysis": draw(st.booleans()),
        "risk_factors": tuple(draw(st.lists(st.sampled_from(rf.RISK_FACTORS), unique=True, max_size=2))),
        "predispositions": tuple(draw(st.lists(st.sampled_from(rf.PREDISPOSITIONS), unique=True, max_size=2))),
    }
    data = {
        "patient": patient,
        "courses": courses,
        "doses": sorted(doses, key=lambda d: d[0]),
        "labs": sorted(labs, key=lambda lab: (lab[3], lab[0])),
        "dental": sorted(dental, key=lambda e: e[1]),
        "meds": meds,
    }
    # Today from the first course's start on: a plan to make, mostly.
    first = min(c["start_date"] for c in courses)
    return data, draw(st.dates(min_value=first, max_value=first + timedelta(days=1500)))


def _build(data: dict[str, Any], package: str) -> Any:
    facts = sys.modules[f"{package}.facts"]
    courses = tuple(
        facts.Course(
            c["key"], c["protocol"], c["start_date"],
            None if c["stop"] is None else facts.Stop(*c["stop"]),
            c["response"], c["requested_interval_months"],
        )
        for c in data["courses"]
    )  # fmt: skip
    return facts.PlanInput(
        facts.PatientFacts(**data["patient"]),
        courses,
        tuple(facts.Dose(f"d{i}", protocol, day, key) for i, (day, protocol, key) in enumerate(data["doses"])),
        tuple(facts.Lab(test, value, unit, day) for test, value, unit, day in data["labs"]),
        tuple(facts.DentalEvent(event, day) for event, day in data["dental"]),
        tuple(facts.Comedication(*med) for med in data["meds"]),
    )


def _outcome(package: str, data: dict[str, Any], today: date) -> Any:
    """The plan's every value with its type, or the error the rules raised."""
    rules = sys.modules[package]
    try:
        plan = sys.modules[f"{package}.engine"].compute_plan(
            _build(data, package), today=today, config=rules.RulesConfig()
        )
    except rules.RuleInputError as error:
        return ("RuleInputError", str(error))
    return _dump(plan)


@settings(max_examples=300, deadline=None)
@given(_random_facts())
def test_compiled_and_plain_rules_agree_on_random_facts(case: tuple[dict[str, Any], date]) -> None:
    _require_compiled()
    data, today = case
    plain = _plain_rules()
    assert _outcome("scheduling.rules", data, today) == _outcome(plain.__name__, data, today)
