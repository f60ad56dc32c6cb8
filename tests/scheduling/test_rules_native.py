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
import sysconfig
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from patients.demo import StoryBuilder, stories_insert
from patients.models import Patient
from scheduling import selectors, services
from scheduling.rules import _native, engine
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
    suffix = str(sysconfig.get_config_var("EXT_SUFFIX"))
    damaged = tmp_path / "builds" / f"rules-{_native.sources_hash(rules)}"
    (damaged / "scheduling" / "rules").mkdir(parents=True)
    (damaged / f"0123456789abcdef0123__mypyc{suffix}").write_bytes(b"not a shared library")
    (damaged / "scheduling" / "rules" / f"engine{suffix}").write_bytes(b"not a shared library")
    (damaged / _native.MARKER).write_text("engine\n")
    where = {_native.DIR_ENV: str(damaged.parent), _native.ENABLED_ENV: "1"}
    assert _engine_file(tmp_path / "tree", **where) == str(rules / "engine.py")


def _plain_rules(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The plain modules of the rules, loaded beside the compiled ones under another name."""
    name = "_carnet_plain_rules"
    if name in sys.modules:
        return sys.modules[name]
    monkeypatch.setenv(_native.ENABLED_ENV, "0")
    spec = importlib.util.spec_from_file_location(
        name, RULES_DIR / "__init__.py", submodule_search_locations=[str(RULES_DIR)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
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
def test_compiled_and_plain_rules_give_the_same_plans_and_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _native.active():
        if REQUIRED and _native.enabled():
            pytest.fail("the compiled rules are not in use though they are required (CARNET_REQUIRE_NATIVE=1)")
        pytest.skip("the plain rules run in this process (CARNET_NATIVE_RULES=0 or no build)")
    plain = _plain_rules(monkeypatch)
    plain_engine = sys.modules[f"{plain.__name__}.engine"]
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
            assert services.plan_digest(compiled_plan, config) == services.plan_digest(plain_plan, plain_config)
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
