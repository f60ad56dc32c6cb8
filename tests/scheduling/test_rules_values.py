"""The positional constructors of the rules' value classes (``rules.facts.positional``) give the
values the classes' own constructors give: equal, hashed alike, still frozen. And the
constructors written out (``init=False``, so that mypyc compiles them) are the ones ``dataclass``
would generate: every field, in order, with its default, set once from its own parameter."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from datetime import date
from pathlib import Path

import pytest

from scheduling.rules import _native
from scheduling.rules import facts as rf
from scheduling.rules.flags import Flag, make_flag

VALUES = [
    (rf.Course, ("12", "denosumab_op_60mg_q6m", date(2020, 1, 6), rf.Stop(date(2024, 1, 6), "zol"), None, 3)),
    (rf.Stop, (date(2024, 1, 6), None)),
    (rf.Dose, ("7", "vitamin_d_50000iu", date(2021, 2, 28), None)),
    (rf.Lab, ("calcium_total", 2.31, "mmol/L", date(2026, 11, 2), 2.2, 2.6)),
    (rf.DentalEvent, ("exam", date(2025, 5, 5))),
    (rf.Comedication, ("prednisone", "glucocorticoid", 10.0, date(2026, 1, 1), None)),
    (Flag, ("REBOUND_RISK", "OP-05", "W", False, False, (("overdue", True),), "12")),
]


@pytest.mark.parametrize(("cls", "values"), VALUES, ids=[cls.__name__ for cls, _ in VALUES])
def test_positional_gives_the_class_value(cls: type, values: tuple[object, ...]) -> None:
    built = rf.positional(cls)(*values)
    expected = cls(*values)
    assert type(built) is cls
    assert built == expected
    assert hash(built) == hash(expected)
    assert dataclasses.astuple(built) == values or cls is rf.Course  # Course nests a Stop: astuple recurses
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, first, None)


def test_positional_takes_every_field() -> None:
    if _native.active():  # compiled: the class's own constructor (native code), defaults and all
        assert rf.positional(rf.Lab) is rf.Lab
        return
    with pytest.raises(TypeError, match="missing"):
        rf.positional(rf.Lab)("calcium_total", 2.31, "mmol/L", date(2026, 11, 2))


def test_positional_refuses_a_class_with_post_init() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("value")

    with pytest.raises(TypeError, match="__post_init__"):
        rf.positional(Checked)


def test_make_flag_is_the_flag_the_class_builds() -> None:
    flag = make_flag("EARLY_INJECTION", "OP-03", "I", subject="12", due=date(2026, 5, 1), overdue=False)
    params = (("due", "2026-05-01"), ("overdue", False))
    assert flag == Flag("EARLY_INJECTION", "OP-03", "I", False, False, params, "12")
    assert make_flag("OP_RISK", "RISK-02", "I") == Flag("OP_RISK", "RISK-02", "I")


RULES_DIR = Path(_native.__file__).resolve().parent


def _written_inits() -> list[tuple[str, ast.ClassDef]]:
    """Every dataclass of the rules declared ``init=False``, as (module name, class node)."""
    found = []
    for path in sorted(RULES_DIR.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and getattr(decorator.func, "id", None) == "dataclass"
                    and any(k.arg == "init" and getattr(k.value, "value", True) is False for k in decorator.keywords)
                ):
                    found.append((path.stem, node))
    return found


WRITTEN = _written_inits()


def test_the_value_classes_built_per_patient_write_their_init() -> None:
    names = {node.name for _, node in WRITTEN}
    assert {"PatientFacts", "Course", "Dose", "Lab", "PlanInput", "PlanItem", "Plan", "Flag", "LabSummary"} <= names


@pytest.mark.parametrize(("module", "node"), WRITTEN, ids=[node.name for _, node in WRITTEN])
def test_a_written_init_is_the_one_dataclass_would_generate(module: str, node: ast.ClassDef) -> None:
    cls = getattr(importlib.import_module(f"scheduling.rules.{module}"), node.name)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    params = [a.arg for a in init.args.args[1:]]
    assert params == [f.name for f in fields]
    missing = len(params) - len(init.args.defaults)
    written = [dataclasses.MISSING] * missing + [ast.literal_eval(d) for d in init.args.defaults]
    assert written == [f.default for f in fields]
    assert all(f.default_factory is dataclasses.MISSING for f in fields)
    # The body sets each field once, in order, from the parameter of its name (``self.x = x``, or
    # ``object.__setattr__(self, "x", x)`` for a frozen class).
    frozen = cls.__dataclass_params__.frozen
    set_fields = []
    for statement in init.body:
        if frozen:
            assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            call = statement.value
            assert ast.unparse(call.func) == "object.__setattr__"
            target, source = call.args[1].value, call.args[2]  # type: ignore[attr-defined]
        else:
            assert isinstance(statement, ast.Assign) and len(statement.targets) == 1
            target, source = ast.unparse(statement.targets[0]).removeprefix("self."), statement.value
        assert isinstance(source, ast.Name) and source.id == target
        set_fields.append(target)
    assert set_fields == params
