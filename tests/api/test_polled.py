"""The lean path of ``GET /api/v1/me/plan`` and ``/me/booklet`` (``backend.polled``) answers
exactly as DRF's dispatch does: same status, headers and body, for the common case it answers
itself and for every case it hands back to DRF (errors, other methods, other content types)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.middleware.common import CommonMiddleware
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from backend import polled
from tests.api.conftest import World
from tests.api.test_auth import bearer, login

PATHS = ["/api/v1/me/plan", "/api/v1/me/booklet"]
DRF_ONLY = "tests.api.drf_me_urls"


@contextmanager
def dispatches() -> Iterator[list[str]]:
    """The paths DRF's ``APIView.dispatch`` answered meanwhile."""
    seen: list[str] = []
    original = APIView.dispatch

    def counted(self: APIView, request: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(request.path)
        return original(self, request, *args, **kwargs)

    with mock.patch.object(APIView, "dispatch", counted):
        yield seen


def answer(client: APIClient, method: str, path: str, **extra: Any) -> tuple[int, dict[str, str], bytes]:
    response = getattr(client, method)(path, **extra)
    return response.status_code, dict(response.items()), response.content


def both(settings: Any, client: APIClient, method: str, path: str, **extra: Any) -> tuple[Any, Any, list[str]]:
    """The answer through the production URLconf (lean path), then through DRF alone."""
    with dispatches() as seen:
        lean = answer(client, method, path, **extra)
    settings.ROOT_URLCONF = DRF_ONLY
    try:
        drf = answer(client, method, path, **extra)
    finally:
        settings.ROOT_URLCONF = "backend.urls"
    return lean, drf, seen


@pytest.mark.parametrize("path", PATHS)
def test_a_patients_poll_is_answered_without_drf_and_identically(world: World, settings: Any, path: str) -> None:
    client = bearer(login("patient.a@example.org").json()["access"])
    lean, drf, seen = both(settings, client, "get", path)
    assert seen == []  # the lean path answered
    assert lean[0] == 200 and lean == drf
    assert lean[1]["Allow"] == "GET, HEAD, OPTIONS"  # DRF's default headers, added by the lean path
    assert "Content-Language" in lean[1] and "X-Frame-Options" in lean[1]  # the middleware still runs
    etag = lean[1]["ETag"]
    for accept in ("*/*", "application/json"):
        lean, drf, seen = both(settings, client, "get", path, HTTP_IF_NONE_MATCH=etag, HTTP_ACCEPT=accept)
        assert seen == [] and lean[0] == 304 and lean == drf
    lean, drf, seen = both(settings, client, "get", path, HTTP_ACCEPT_LANGUAGE="fr")
    assert seen == [] and lean[0] == 200 and lean == drf


@pytest.mark.parametrize("path", PATHS)
def test_the_poll_is_answered_before_the_middleware_that_has_nothing_to_do_for_it(world: World, path: str) -> None:
    """``PolledMiddleware`` answers it (``CommonMiddleware`` and the rest below it never run);
    what it hands back goes down the whole stack to DRF, and the lean path is not tried twice."""
    client = bearer(login("patient.a@example.org").json()["access"])
    common: list[str] = []
    tried: list[str] = []
    original_common, original_answer = CommonMiddleware.process_request, polled._answer

    def counted_common(self: CommonMiddleware, request: Any) -> Any:
        common.append(request.path)
        return original_common(self, request)

    def counted_answer(lean: Any, request: Any, read: Any) -> Any:
        tried.append(request.path)
        return original_answer(lean, request, read)

    with (
        mock.patch.object(CommonMiddleware, "process_request", counted_common),
        mock.patch.object(polled, "_answer", counted_answer),
        dispatches() as seen,
    ):
        ok = client.get(path)
        assert ok.status_code == 200 and ok["Content-Length"] == str(len(ok.content))
        assert (common, seen, tried) == ([], [], [path])
        refused = client.get(path, HTTP_ACCEPT="text/html")  # not the lean path's: DRF's 406
        assert refused.status_code == 406
        assert (common, seen, tried) == ([path], [path], [path, path])  # tried once for it, by the middleware
        other = client.get("/api/v1/me")  # not a polled path: the whole stack, as ever
        assert other.status_code == 200 and common == [path, "/api/v1/me"]


@pytest.mark.parametrize("path", PATHS)
def test_everything_else_goes_to_drf_and_gets_the_same_answer(world: World, settings: Any, path: str) -> None:
    access = login("patient.a@example.org").json()["access"]
    refresh_of_b = login("patient.b@example.org").json()
    staff = login("nurse1@example.org").json()["access"]
    session = APIClient()
    session.force_login(world.users["patient_a"])  # a browser's session: DRF's SessionAuthentication
    cases: list[tuple[APIClient, str, dict[str, str], int]] = [
        (APIClient(), "get", {}, 401),
        (bearer("not-a-token"), "get", {}, 401),
        (bearer(access + "x"), "get", {}, 401),
        (APIClient(), "get", {"HTTP_AUTHORIZATION": f"Bearer {access} extra"}, 401),
        (APIClient(), "get", {"HTTP_AUTHORIZATION": f"Token {access}"}, 401),
        (bearer(staff), "get", {}, 403),
        (bearer(access), "get", {"HTTP_ACCEPT": "text/html"}, 406),
        (bearer(access), "get", {"QUERY_STRING": "format=json"}, 200),
        (bearer(access), "head", {}, 200),
        (bearer(access), "options", {}, 200),
        (bearer(access), "post", {}, 405),
        (session, "get", {}, 200),
    ]
    for client, method, extra, status in cases:
        lean, drf, seen = both(settings, client, method, path, **extra)
        assert seen == [path], (method, extra)  # handed to DRF
        assert lean[0] == status, (method, extra, lean)
        assert lean == drf, (method, extra)
    # A signed-out session: its access token is refused at once.
    client_b = bearer(refresh_of_b["access"])
    assert client_b.post("/api/v1/auth/logout", {"refresh": refresh_of_b["refresh"]}, format="json").status_code in (
        200,
        204,
    )
    lean, drf, seen = both(settings, client_b, "get", path)
    assert seen == [path] and lean[0] == 401 and lean == drf


@pytest.mark.parametrize("path", PATHS)
def test_an_expired_token_or_an_inactive_user_is_refused_as_by_drf(world: World, settings: Any, path: str) -> None:
    access = login("patient.a@example.org").json()["access"]
    client = bearer(access)
    assert client.get(path).status_code == 200  # the token is now kept by this process
    with time_machine.travel(timezone.now() + settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] + timedelta(seconds=5)):
        lean, drf, seen = both(settings, client, "get", path)
    assert seen == [path] and lean[0] == 401 and lean == drf
    user = world.users["patient_a"]
    user.is_active = False
    user.save(update_fields=["is_active"])
    lean, drf, seen = both(settings, client, "get", path)
    assert seen == [path] and lean[0] == 401 and lean == drf


@pytest.mark.parametrize("path", PATHS)
def test_the_lean_path_is_throttled_like_drf(world: World, settings: Any, path: str) -> None:
    from django.core.cache import cache

    client = bearer(login("patient.a@example.org").json()["access"])
    rates = dict(UserRateThrottle.THROTTLE_RATES)
    UserRateThrottle.THROTTLE_RATES = {**rates, "user": "2/min"}
    answers: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
    handed: list[str] = []
    try:
        for urlconf in (DRF_ONLY, "backend.urls"):
            cache.clear()
            settings.ROOT_URLCONF = urlconf
            with dispatches() as seen:
                answers[urlconf] = [answer(client, "get", path) for _ in range(3)]
            handed = seen
    finally:
        UserRateThrottle.THROTTLE_RATES = rates
        settings.ROOT_URLCONF = "backend.urls"
    lean, drf = answers["backend.urls"], answers[DRF_ONLY]
    assert [status for status, _headers, _body in lean] == [200, 200, 429]
    assert handed == [path]  # with the lean path, only the throttled request went to DRF
    assert lean[2][1]["Retry-After"] and lean[2][1]["Content-Type"] == "application/problem+json"
    # Same answers, but Retry-After counts down from each run's own first request.
    assert [(s, {k: v for k, v in h.items() if k != "Retry-After"}, b) for s, h, b in lean] == [
        (s, {k: v for k, v in h.items() if k != "Retry-After"}, b) for s, h, b in drf
    ]


def test_the_lean_views_keep_drfs_attributes_for_the_schema_and_the_permission_matrix() -> None:
    from django.urls import resolve

    from patients.api import MeBookletView
    from scheduling.api import MePlanView

    for path, view_class in zip(PATHS, (MePlanView, MeBookletView), strict=True):
        callback: Any = resolve(path).func
        assert callback.cls is view_class and callback.view_class is view_class
        assert callback.csrf_exempt is True and callback.initkwargs == {}


@pytest.mark.postgres
def test_a_booklet_304_is_the_auth_query_alone_and_a_change_is_seen(world: World) -> None:
    """Through the lean path, the booklet's revision comes with the token's user (one statement)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from patients import services
    from patients.api import BOOKLETS
    from tests.api.conftest import day_ago

    client = bearer(login("patient.a@example.org").json()["access"])
    first = client.get("/api/v1/me/booklet")
    etag = first["ETag"]
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/me/booklet", HTTP_IF_NONE_MATCH=etag).status_code == 304
        kept = client.get("/api/v1/me/booklet")  # the body this process rendered: not rendered again
    assert len(queries.captured_queries) == 2, [q["sql"][:80] for q in queries.captured_queries]
    assert all("carnet_token_user_booklet" in q["sql"] for q in queries.captured_queries)
    assert kept.content == first.content and kept["ETag"] == etag
    BOOKLETS.clear()
    assert client.get("/api/v1/me/booklet").content == first.content  # rendered afresh: the same body
    services.dental_event_add(patient=world.patient_a, event="exam", on=day_ago(1), by=world.users["nurse1"])
    changed = client.get("/api/v1/me/booklet", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert len(changed.json()["dental_events"]) == len(first.json()["dental_events"]) + 1
    # The staff's read of the same booklet (its own revision query) names it by the same ETag.
    staff = world.client("nurse1").get(f"/api/v1/patients/{world.patient_a.public_id}/booklet")
    assert staff["ETag"] == changed["ETag"]
