"""Access tokens decoded once per process (``backend.auth_query.validated_token``): what can change
about a token is still checked on every request — expiry, sign-out, a deactivated user."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import time_machine
from django.utils import timezone

from tests.api.conftest import World
from tests.api.test_auth import bearer, login


def test_a_kept_token_still_expires_on_time(world: World, settings: Any) -> None:
    access = login("patient.a@example.org").json()["access"]
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    assert bearer(access).get("/api/v1/me").status_code == 200  # decoded, kept
    with time_machine.travel(timezone.now() + lifetime - timedelta(seconds=5)):
        assert bearer(access).get("/api/v1/me").status_code == 200
    with time_machine.travel(timezone.now() + lifetime + timedelta(seconds=5)):
        assert bearer(access).get("/api/v1/me").status_code == 401


def test_a_kept_token_is_refused_once_its_user_is_deactivated(world: World) -> None:
    access = login("patient.a@example.org").json()["access"]
    assert bearer(access).get("/api/v1/me").status_code == 200
    user = world.users["patient_a"]
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert bearer(access).get("/api/v1/me").status_code == 401


def test_only_the_exact_bytes_are_kept(world: World) -> None:
    access = login("patient.a@example.org").json()["access"]
    assert bearer(access).get("/api/v1/me").status_code == 200
    header, payload, signature = access.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    assert bearer(forged).get("/api/v1/me").status_code == 401


def test_plan_304_after_auth_costs_no_query_and_a_change_is_seen(world: World) -> None:
    """The token's auth query reads the plan revision: a plan 304 is that query alone."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from patients import services
    from tests.api.conftest import day_ago

    client = bearer(login("patient.a@example.org").json()["access"])
    etag = client.get("/api/v1/me/plan")["ETag"]
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/me/plan", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert len(queries.captured_queries) == 1, [q["sql"][:80] for q in queries.captured_queries]
    services.course_start(patient=world.patient_a, protocol="vitamin_d_50000iu", start_date=day_ago(3), by=None)
    changed = client.get("/api/v1/me/plan", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert (
        bearer(login("patient.b@example.org").json()["access"])
        .get("/api/v1/me/plan", HTTP_IF_NONE_MATCH=changed["ETag"])
        .status_code
        == 200
    )  # patient B's revision is not patient A's


def test_polled_reads_still_negotiate_what_is_not_json(world: World) -> None:
    client = bearer(login("patient.a@example.org").json()["access"])
    for url in ("/api/v1/me/plan", "/api/v1/me/booklet"):
        for accept in ("application/json", "*/*", "application/json; q=0.9, */*; q=0.1"):
            response = client.get(url, HTTP_ACCEPT=accept)
            assert response.status_code == 200 and response["Content-Type"] == "application/json", accept
        assert client.get(url, HTTP_ACCEPT="text/html").status_code == 406


def test_a_kept_plan_is_the_plan_rendered_now(world: World) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scheduling.api import PLANS

    client = bearer(login("patient.a@example.org").json()["access"])
    first = client.get("/api/v1/me/plan")
    with CaptureQueriesContext(connection) as queries:
        again = client.get("/api/v1/me/plan")  # same ETag: the body this process rendered
    assert len(queries.captured_queries) == 1
    PLANS.clear()
    fresh = client.get("/api/v1/me/plan")
    assert first.content == again.content == fresh.content and first["ETag"] == fresh["ETag"]
    french, english = (client.get("/api/v1/me/plan", HTTP_ACCEPT_LANGUAGE=lang) for lang in ("fr", "en"))
    assert french["ETag"] != english["ETag"]  # a body kept per language
    assert (french.json()["language"], english.json()["language"]) == ("fr", "en")
