"""OWASP API1: every /api/v1 route × every role × an object of another team or another patient.

The routes come from the URL resolver (``backend.api_urls``), so a new endpoint fails
``test_every_route_is_in_the_matrix`` until it is classified here, and is then walked by the
matrix. Every refusal is also checked to have changed nothing stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.api.conftest import World

ROLES = ("anonymous", "patient_a", "patient_b", "nurse1", "nurse2", "physician2", "admin2")
OUTSIDE_STAFF = ("nurse2", "physician2", "admin2")
METHODS = ("get", "post", "put", "patch", "delete")

PUBLIC = {"api-token", "api-token-refresh", "api-session-csrf", "api-session-login"}
ANY_USER = {"api-logout", "api-sign-out-everywhere", "api-whoami", "api-session-logout"}

# The object of patient A (team 1) each route with an id is tried on.
OBJECT_OF: dict[str, Callable[[World], Any]] = {
    "api-me-device": lambda w: w.device_a.public_id,
    "api-patient": lambda w: w.patient_a.public_id,
    "api-patient-booklet": lambda w: w.patient_a.public_id,
    "api-patient-plan": lambda w: w.patient_a.public_id,
    "api-patient-courses": lambda w: w.patient_a.public_id,
    "api-patient-doses": lambda w: w.patient_a.public_id,
    "api-patient-labs": lambda w: w.patient_a.public_id,
    "api-patient-dental-events": lambda w: w.patient_a.public_id,
    "api-patient-comedications": lambda w: w.patient_a.public_id,
    "api-course-stop": lambda w: w.course_a.public_id,
    "api-course-void": lambda w: w.course_a.public_id,
    "api-dose-void": lambda w: w.dose_a.public_id,
    "api-lab-void": lambda w: w.lab_a.public_id,
    "api-dental-event-void": lambda w: w.dental_a.public_id,
    "api-comedication-void": lambda w: w.comed_a.public_id,
    "api-appointment": lambda w: w.appointment_a.public_id,
    "api-appointment-move": lambda w: w.appointment_a.public_id,
    "api-appointment-cancel": lambda w: w.appointment_a.public_id,
    "api-escalation-acknowledge": lambda w: w.escalation_a.public_id,
    "api-escalation-resolve": lambda w: w.escalation_a.public_id,
}


def api_routes() -> Iterator[tuple[str, str, str]]:
    from backend.api_urls import urlpatterns

    for pattern in urlpatterns:
        view = pattern.callback.view_class  # type: ignore[union-attr]
        for method in METHODS:
            if hasattr(view, method):
                yield pattern.name or "", str(pattern.pattern), method


ROUTES = list(api_routes())


def test_every_route_is_in_the_matrix() -> None:
    assert len(ROUTES) >= 50
    for name, pattern, _method in ROUTES:
        has_id = "<" in pattern
        assert has_id == (name in OBJECT_OF), f"{pattern}: add {name} to OBJECT_OF"
        assert name.startswith("api-") or name == "plan-preview", name


def test_no_route_takes_a_sequential_id() -> None:
    for _name, pattern, _method in ROUTES:
        assert "<int:" not in pattern and "pk>" not in pattern, pattern


def snapshot() -> dict[str, Any]:
    """What a refused request must not change."""
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    from idempotency.models import IdempotencyRecord
    from notifications.models import Device, NotificationPreference
    from patients.models import Comedication, DentalEvent, DoseRecord, LabResult, Patient, TreatmentCourse
    from scheduling.models import Appointment, Escalation, PlanItem
    from scheduling.models_feeds import CalendarFeed

    state: dict[str, Any] = {}
    for model in (
        Patient,
        TreatmentCourse,
        DoseRecord,
        LabResult,
        DentalEvent,
        Comedication,
        PlanItem,
        Escalation,
        Appointment,
        Device,
        NotificationPreference,
        CalendarFeed,
        IdempotencyRecord,
        BlacklistedToken,
    ):
        state[model.__name__] = model.objects.count()
    for model in (TreatmentCourse, DoseRecord, LabResult, DentalEvent):
        state[f"{model.__name__}.voided"] = model.objects.filter(voided_at__isnull=False).count()
    state["courses.stopped"] = TreatmentCourse.objects.filter(stop_date__isnull=False).count()
    state["appointments"] = sorted(Appointment.objects.values_list("status", "starts_at", "sequence"))
    state["escalations"] = sorted(Escalation.objects.values_list("level", "acknowledged_at", "resolved_at"), key=str)
    state["devices.active"] = Device.objects.filter(active=True).count()
    state["feeds"] = sorted(CalendarFeed.objects.values_list("token_hash", "revoked_at"), key=str)
    state["patients"] = sorted(Patient.objects.values_list("email", "timezone", "language"))
    return state


def body_for(name: str, world: World) -> dict[str, Any]:
    """A request that would reach a team-1 object through the body (list routes)."""
    if name == "api-appointments":
        return {
            "plan_item": str(world.item_a.public_id),
            "starts_at": (timezone.now() + timedelta(days=30)).isoformat(),
            "out_of_window_reason": "x",
        }
    return {}


def call(world: World, role: str, method: str, pattern: str, name: str) -> Any:
    url = "/api/v1/" + re.sub(r"<str:id>", str(OBJECT_OF[name](world)) if name in OBJECT_OF else "", pattern)
    client = world.client(role)
    kwargs: dict[str, Any] = {"format": "json", "HTTP_ACCEPT_LANGUAGE": "en"}
    if method in ("post", "put", "patch"):
        kwargs["data"] = body_for(name, world)
    return getattr(client, method)(url, **kwargs)


def identifiers_of_a(world: World) -> list[str]:
    return [
        str(world.patient_a.public_id),
        "Arnaud",
        str(world.dose_a.public_id),
        str(world.course_a.public_id),
        str(world.device_a.public_id),
        str(world.appointment_a.public_id),
        str(world.item_a.public_id),
    ]


@pytest.mark.parametrize(("name", "pattern", "method"), ROUTES, ids=[f"{m.upper()} /{p}" for _n, p, m in ROUTES])
def test_route_refuses_everyone_outside_its_scope(world: World, name: str, pattern: str, method: str) -> None:
    if name in PUBLIC:
        # Open to anyone by design (log in, refresh, CSRF cookie); nothing about a patient is returned.
        for role in ROLES:
            response = call(world, role, method, pattern, name)
            assert response.status_code < 500
            assert not any(i in response.content.decode() for i in identifiers_of_a(world))
        return
    is_me = name.startswith("api-me")
    is_staff = not is_me and name not in ANY_USER
    refused: dict[str, tuple[int, ...]] = {"anonymous": (401,)}
    if is_staff:
        refused.update({"patient_a": (403,), "patient_b": (403,)})
        if name in OBJECT_OF:
            refused.update(dict.fromkeys(OUTSIDE_STAFF, (404,)))
    if is_me:
        refused.update(dict.fromkeys(("nurse1", *OUTSIDE_STAFF), (403,)))
        if name in OBJECT_OF:
            refused["patient_b"] = (404,)
    before = snapshot()
    for role, statuses in refused.items():
        response = call(world, role, method, pattern, name)
        assert response.status_code in statuses, (role, response.status_code, response.content[:300])
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["status"] == response.status_code
        assert snapshot() == before, f"{role}: a refused {method.upper()} changed stored data"
    # Roles that get in must still see nothing of patient A unless it is theirs (team 1, patient A).
    allowed = [r for r in ROLES if r not in refused]
    for role in sorted(allowed, key=lambda r: r in ("nurse1", "patient_a")):
        response = call(world, role, method, pattern, name)
        assert response.status_code not in (401, 403, 404), (role, response.status_code, response.content[:300])
        assert response.status_code < 500
        if role not in ("nurse1", "patient_a"):
            leaked = [i for i in identifiers_of_a(world) if i in response.content.decode()]
            assert not leaked, f"{role} saw {leaked} through {method.upper()} /{pattern}"
            if method != "get" and name == "api-appointments":
                assert response.status_code == 400 and response.json()["field"] == "plan_item"
