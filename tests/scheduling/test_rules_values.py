"""The positional constructors of the rules' value classes (``rules.facts.positional``) give the
values the classes' own constructors give: equal, hashed alike, still frozen."""

from __future__ import annotations

import dataclasses
from datetime import date

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
