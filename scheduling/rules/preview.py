"""JSON in/out for ``POST /api/v1/plan/preview`` and ``manage.py plan FILE.json``.

``parse_input`` validates the fixed input shape and raises :class:`RuleInputError` naming the
field (``doses[0].given_at``). ``render`` gives the output shape with messages in fr or en.

Decision on the brief's example: it shows ``corrected_calcium_mmol_l: 2.325`` for a calcium of
2.35 mmol/L drawn without an albumin. CA-01 says that without albumin the measured value is used
and marked uncorrected, so the output is 2.35 with ``calcium_corrected: false`` (2.325 would be
the correction with an albumin of 41 g/L). Likewise the example's ``vitd_ng_ml: 34`` has no
25-OH-D in its input; the output is null there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from .calendar import local_date
from .config import RulesConfig
from .engine import compute_plan
from .errors import RuleInputError
from .facts import (
    COMEDICATION_CLASSES,
    DENTAL_EVENTS,
    LAB_UNITS,
    PREDISPOSITIONS,
    RESPONSES,
    RISK_FACTORS,
    Comedication,
    Course,
    DentalEvent,
    Dose,
    Lab,
    PatientFacts,
    PlanInput,
    Reevaluation,
    Stop,
)
from .items import Plan, PlanItem
from .protocols import ALENDRONATE, PROTOCOL_IDS, ZOL_OP

__all__ = ["parse_input", "preview", "render"]

_CONSOLIDATIONS = (ZOL_OP, ALENDRONATE)


def _obj(data: object, field: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise RuleInputError(field, "must be an object")
    return data


def _list(data: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise RuleInputError(key, "must be a list")
    return value


def _req(data: Mapping[str, Any], key: str, field: str) -> Any:
    if key not in data or data[key] is None:
        raise RuleInputError(field, "is required")
    return data[key]


# Facts outside these years are typing errors, and a course started centuries ago would make the
# planner project thousands of cycles: refuse them at the door.
EARLIEST = date(1900, 1, 1)
LATEST = date(2100, 12, 31)


def _date(value: object, field: str, tz: str | None = None) -> date:
    """A local date "YYYY-MM-DD", or an ISO instant with offset converted with TIME-01."""
    day = _parse_date(value, field, tz)
    if not EARLIEST <= day <= LATEST:
        raise RuleInputError(field, f"must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}")
    return day


def _parse_date(value: object, field: str, tz: str | None) -> date:
    if not isinstance(value, str):
        raise RuleInputError(field, "must be a date string (YYYY-MM-DD)")
    if len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise RuleInputError(field, f"impossible date {value!r}") from exc
    if tz is None:
        raise RuleInputError(field, "must be a date (YYYY-MM-DD)")
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RuleInputError(field, f"impossible date or instant {value!r}") from exc
    if instant.tzinfo is None:
        raise RuleInputError(field, "an instant needs a UTC offset")
    return local_date(instant, tz)


def _num(value: object, field: str, *, optional: bool = False, positive: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleInputError(field, "must be a number")
    if value < 0:
        raise RuleInputError(field, "must not be negative")
    if positive and value == 0:
        # A measured lab value: the booklet refuses 0 as implausible for every test
        # (patients/units.py), and the rules divide by some (a creatinine in Cockcroft-Gault).
        raise RuleInputError(field, "must be greater than 0")
    return float(value)


def _str(value: object, field: str, choices: Sequence[str] | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise RuleInputError(field, "must be a non-empty string")
    if choices is not None and value not in choices:
        raise RuleInputError(field, f"unknown value {value!r}; expected one of {', '.join(choices)}")
    return value


def _strings(value: object, field: str, choices: Sequence[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RuleInputError(field, "must be a list")
    return tuple(_str(v, f"{field}[{i}]", choices) for i, v in enumerate(value))


def _patient(data: object) -> PatientFacts:
    p = _obj(data, "patient")
    tz = p.get("timezone", "Europe/Paris")
    try:
        RulesConfig(timezone=_str(tz, "patient.timezone")).validate()
    except RuleInputError as exc:
        raise RuleInputError("patient.timezone", exc.message) from exc
    dialysis = p.get("dialysis", False)
    if not isinstance(dialysis, bool):
        raise RuleInputError("patient.dialysis", "must be a boolean")
    return PatientFacts(
        birth_date=_date(_req(p, "birth_date", "patient.birth_date"), "patient.birth_date"),
        sex=_str(_req(p, "sex", "patient.sex"), "patient.sex", ("F", "M")),
        timezone=tz,
        egfr_ml_min=_num(p.get("egfr_ml_min"), "patient.egfr_ml_min", optional=True),
        crcl_ml_min=_num(p.get("crcl_ml_min"), "patient.crcl_ml_min", optional=True),
        weight_kg=_num(p.get("weight_kg"), "patient.weight_kg", optional=True),
        dialysis=dialysis,
        risk_factors=_strings(p.get("risk_factors"), "patient.risk_factors", RISK_FACTORS),
        predispositions=_strings(p.get("predispositions"), "patient.predispositions", PREDISPOSITIONS),
    )


def _course(i: int, data: object, tz: str) -> Course:
    f = f"courses[{i}]"
    c = _obj(data, f)
    stop = None
    if c.get("stop") is not None:
        s = _obj(c["stop"], f"{f}.stop")
        cons = s.get("consolidation")
        stop = Stop(
            date=_date(_req(s, "date", f"{f}.stop.date"), f"{f}.stop.date", tz),
            consolidation=None if cons is None else _str(cons, f"{f}.stop.consolidation", _CONSOLIDATIONS),
        )
    response = c.get("response")
    requested = c.get("requested_interval_months")
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int)):
        raise RuleInputError(f"{f}.requested_interval_months", "must be an integer")
    course = Course(
        key=_str(c.get("key", f"course-{i + 1}"), f"{f}.key"),
        protocol=_str(_req(c, "protocol", f"{f}.protocol"), f"{f}.protocol", PROTOCOL_IDS),
        start_date=_date(_req(c, "start_date", f"{f}.start_date"), f"{f}.start_date", tz),
        stop=stop,
        response=None if response is None else _str(response, f"{f}.response", RESPONSES),
        requested_interval_months=requested,
    )
    if stop is not None and stop.date < course.start_date:
        raise RuleInputError(f"{f}.stop.date", "is before the course start")
    return course


def _dose(i: int, data: object, tz: str, courses: tuple[Course, ...]) -> Dose:
    f = f"doses[{i}]"
    d = _obj(data, f)
    protocol = _str(_req(d, "protocol", f"{f}.protocol"), f"{f}.protocol", PROTOCOL_IDS)
    given = _date(_req(d, "given_at", f"{f}.given_at"), f"{f}.given_at", tz)
    course_key = d.get("course")
    if course_key is not None:
        course = next((c for c in courses if c.key == course_key), None)
        if course is None:
            raise RuleInputError(f"{f}.course", f"unknown course {course_key!r}")
        if course.protocol != protocol:
            raise RuleInputError(f"{f}.protocol", "does not match the course protocol")
        if given < course.start_date:
            raise RuleInputError(f"{f}.given_at", "is before the course start date")
    else:
        same = [c for c in courses if c.protocol == protocol]
        if same and all(given < c.start_date for c in same):
            raise RuleInputError(f"{f}.given_at", "is before the course start date")
    return Dose(
        key=_str(d.get("key", f"dose-{i + 1}"), f"{f}.key"), protocol=protocol, given_on=given, course_key=course_key
    )


def _lab(i: int, data: object, tz: str) -> Lab:
    f = f"labs[{i}]"
    lab = _obj(data, f)
    test = _str(_req(lab, "test", f"{f}.test"), f"{f}.test", tuple(LAB_UNITS))
    unit = _str(_req(lab, "unit", f"{f}.unit"), f"{f}.unit")
    if unit not in LAB_UNITS[test]:
        raise RuleInputError(
            f"{f}.unit", f"unit {unit!r} does not fit test {test!r}; expected one of {', '.join(LAB_UNITS[test])}"
        )
    value = _num(_req(lab, "value", f"{f}.value"), f"{f}.value", positive=True)
    assert value is not None
    return Lab(
        test=test,
        value=value,
        unit=unit,
        date=_date(_req(lab, "date", f"{f}.date"), f"{f}.date", tz),
        ref_low=_num(lab.get("ref_low"), f"{f}.ref_low", optional=True),
        ref_high=_num(lab.get("ref_high"), f"{f}.ref_high", optional=True),
    )


def _comedication(i: int, data: object, tz: str) -> Comedication:
    f = f"comedications[{i}]"
    m = _obj(data, f)
    cls = m.get("class")
    stop = m.get("stop_date")
    return Comedication(
        name=_str(_req(m, "name", f"{f}.name"), f"{f}.name"),
        drug_class=None if cls is None else _str(cls, f"{f}.class", COMEDICATION_CLASSES),
        mg_per_day=_num(m.get("mg_per_day"), f"{f}.mg_per_day", optional=True),
        start_date=_date(_req(m, "start_date", f"{f}.start_date"), f"{f}.start_date", tz),
        stop_date=None if stop is None else _date(stop, f"{f}.stop_date", tz),
    )


def parse_input(data: Mapping[str, Any]) -> tuple[PlanInput, date, RulesConfig]:
    """Validate the preview JSON; returns (facts, today, config)."""
    root = _obj(data, "body")
    try:
        config = RulesConfig.from_mapping(_obj(root.get("config") or {}, "config"))
    except RuleInputError as exc:
        raise exc if exc.field == "config" else exc.with_prefix("config") from exc
    today = _date(_req(root, "today", "today"), "today")
    patient = _patient(_req(root, "patient", "patient"))
    tz = patient.timezone
    courses = tuple(_course(i, c, tz) for i, c in enumerate(_list(root, "courses")))
    if len({c.key for c in courses}) != len(courses):
        raise RuleInputError("courses", "course keys must be unique")
    doses = tuple(_dose(i, d, tz, courses) for i, d in enumerate(_list(root, "doses")))
    labs = tuple(_lab(i, lab, tz) for i, lab in enumerate(_list(root, "labs")))
    dental = []
    for i, e in enumerate(_list(root, "dental")):
        ev = _obj(e, f"dental[{i}]")
        dental.append(
            DentalEvent(
                event=_str(_req(ev, "event", f"dental[{i}].event"), f"dental[{i}].event", DENTAL_EVENTS),
                date=_date(_req(ev, "date", f"dental[{i}].date"), f"dental[{i}].date", tz),
            )
        )
    meds = tuple(_comedication(i, m, tz) for i, m in enumerate(_list(root, "comedications")))
    reevals = []
    for i, r in enumerate(_list(root, "reevaluations")):
        rv = _obj(r, f"reevaluations[{i}]")
        reevals.append(
            Reevaluation(
                date=_date(_req(rv, "date", f"reevaluations[{i}].date"), f"reevaluations[{i}].date", tz),
                course_key=rv.get("course"),
            )
        )
    facts = PlanInput(patient, courses, doses, labs, tuple(dental), meds, tuple(reevals))
    return facts, today, config


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def _item(item: PlanItem) -> dict[str, Any]:
    dose: float | int | None = item.dose_mg
    if isinstance(dose, float) and dose.is_integer():
        dose = int(dose)
    return {
        "key": item.key, "kind": item.kind, "protocol": item.protocol,
        "course": item.course_key, "ordinal": item.ordinal, "product": item.product,
        "dose_mg": dose, "phase": item.phase, "due": _iso(item.due),
        "window_start": _iso(item.window_start), "window_end": _iso(item.window_end),
        "reminder": _iso(item.reminder), "status": item.status, "level": item.level,
        "days_late": item.days_late, "severity": item.severity, "notify": list(item.notify),
        "escalation": {k: v.isoformat() for k, v in item.escalation.items()},
        "rule": item.rule, "blocked_by": list(item.blocked_by), "until": _iso(item.until),
        "notification_offsets": list(item.notification_offsets),
    }  # fmt: skip


def render(plan: Plan, lang: str = "fr") -> dict[str, Any]:
    """The preview output shape, messages in ``lang`` ("fr" or "en")."""
    if lang not in ("fr", "en"):
        raise RuleInputError("lang", "must be fr or en")
    labs = plan.labs
    ca = labs.corrected_calcium_mmol_l
    return {
        "items": [_item(i) for i in plan.items],
        "flags": [
            {
                "code": f.code,
                "rule": f.rule,
                "severity": f.severity,
                "blocks": f.blocks,
                "override_allowed": f.override_allowed,
                "subject": f.subject,
                "params": f.param_map,
                "message": f.message(lang),
            }
            for f in plan.flags
        ],
        "labs": {
            "corrected_calcium_mmol_l": None if ca is None else round(ca, 3),
            "calcium_display": None if ca is None else f"{ca:.2f}",
            "calcium_corrected": labs.calcium_corrected,
            "calcium_status": labs.calcium_status,
            "calcium_grade": labs.calcium_grade,
            "calcium_date": _iso(labs.calcium_date),
            "vitd_ng_ml": None if labs.vitd_ng_ml is None else round(labs.vitd_ng_ml, 1),
            "vitd_class": labs.vitd_class,
            "crcl_ml_min": None if labs.crcl_ml_min is None else round(labs.crcl_ml_min, 2),
            "egfr_ml_min": labs.egfr_ml_min,
            "zoledronic_dose_mg": labs.zoledronic_dose_mg,
        },
    }


def preview(data: Mapping[str, Any], *, lang: str = "fr") -> dict[str, Any]:
    """Parse, plan and render in one call (the API and ``manage.py plan`` use this)."""
    facts, today, config = parse_input(data)
    return render(compute_plan(facts, today=today, config=config), lang=lang)
