"""Tokens for the app (short access, rotating single-use refresh), logout, sign-out-everywhere,
session login with CSRF for staff pages, and throttled failed logins (django-axes)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.api.conftest import PASSWORD, World

TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/token/refresh"


def login(email: str, password: str = PASSWORD) -> Any:
    return APIClient().post(TOKEN, {"email": email, "password": password}, format="json")


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def test_access_token_is_short_lived_and_names_the_user_by_uuid(world: World) -> None:
    import jwt

    response = login("patient.a@example.org")
    assert response.status_code == 200, response.content
    tokens = response.json()
    claims = jwt.decode(tokens["access"], settings.SECRET_KEY, algorithms=["HS256"])
    assert claims["sub"] == str(world.users["patient_a"].public_id)
    assert claims["exp"] - claims["iat"] <= 15 * 60
    me = bearer(tokens["access"]).get("/api/v1/me")
    assert me.status_code == 200 and me.json()["id"] == str(world.patient_a.public_id)


def test_wrong_password_is_a_problem_naming_the_field(world: World) -> None:
    response = login("patient.a@example.org", "wrong")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["field"] == "password"


def test_refresh_rotates_and_a_used_refresh_token_is_refused(world: World) -> None:
    first = login("nurse1@example.org").json()
    second = APIClient().post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert second.status_code == 200
    assert second.json()["refresh"] != first["refresh"]
    # Single use: replaying the old refresh token fails, and so do its access tokens.
    replay = APIClient().post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert replay.status_code == 400 and replay.json()["field"] == "refresh"
    assert bearer(first["access"]).get("/api/v1/auth/whoami").status_code == 401
    assert bearer(second.json()["access"]).get("/api/v1/auth/whoami").status_code == 200


def test_logout_revokes_the_refresh_token_and_its_access_tokens_at_once(world: World) -> None:
    tokens = login("patient.a@example.org").json()
    client = bearer(tokens["access"])
    assert client.post("/api/v1/auth/logout", {"refresh": tokens["refresh"]}, format="json").status_code == 204
    assert client.get("/api/v1/me").status_code == 401
    assert APIClient().post(REFRESH, {"refresh": tokens["refresh"]}, format="json").status_code == 400


def test_logout_with_someone_elses_refresh_token_is_refused(world: World) -> None:
    mine = login("patient.a@example.org").json()
    theirs = login("patient.b@example.org").json()
    response = bearer(mine["access"]).post("/api/v1/auth/logout", {"refresh": theirs["refresh"]}, format="json")
    assert response.status_code == 400
    assert APIClient().post(REFRESH, {"refresh": theirs["refresh"]}, format="json").status_code == 200


def test_sign_out_everywhere_revokes_every_device(world: World) -> None:
    phone = login("patient.a@example.org").json()
    tablet = login("patient.a@example.org").json()
    other_user = login("patient.b@example.org").json()
    response = bearer(phone["access"]).post("/api/v1/auth/sign-out-everywhere")
    assert response.status_code == 200 and response.json()["revoked"] == 2
    for tokens in (phone, tablet):
        assert bearer(tokens["access"]).get("/api/v1/me").status_code == 401
        assert APIClient().post(REFRESH, {"refresh": tokens["refresh"]}, format="json").status_code == 400
    assert bearer(other_user["access"]).get("/api/v1/me").status_code == 200
    # Logging in again works.
    assert login("patient.a@example.org").status_code == 200


def test_session_login_requires_csrf_and_then_works_for_staff_pages(world: World) -> None:
    client = APIClient(enforce_csrf_checks=True)
    body = {"email": "nurse1@example.org", "password": PASSWORD}
    refused = client.post("/api/v1/auth/session/login", body, format="json")
    assert refused.status_code == 403
    token = client.get("/api/v1/auth/session/csrf").json()["csrf_token"]
    ok = client.post("/api/v1/auth/session/login", body, format="json", HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 200, ok.content
    assert client.get("/api/v1/patients").status_code == 200
    # A session write without the CSRF token is refused; with it, it goes through.
    token = client.cookies["csrftoken"].value
    assert client.post("/api/v1/auth/session/logout").status_code == 403
    assert client.post("/api/v1/auth/session/logout", HTTP_X_CSRFTOKEN=token).status_code == 204
    assert client.get("/api/v1/patients").status_code in (401, 403)


def test_failed_logins_are_locked_out_per_email_and_ip(world: World, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    statuses = [login("nurse1@example.org", "guess").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]  # the third failure reaches the limit
    locked = login("nurse1@example.org")  # even the right password
    assert locked.status_code == 429
    assert locked["Content-Type"] == "application/problem+json"
    assert locked.json()["code"] == "locked_out" and int(locked["Retry-After"]) > 0
    # Another account from the same address is not locked.
    assert login("patient.a@example.org").status_code == 200


@pytest.mark.parametrize("lang,text", [("fr", "mot de passe"), ("en", "password")])
def test_login_errors_follow_accept_language(world: World, lang: str, text: str) -> None:
    response = APIClient().post(
        TOKEN, {"email": "nurse1@example.org", "password": "x"}, format="json", HTTP_ACCEPT_LANGUAGE=lang
    )
    assert text in response.json()["detail"].lower()


def test_login_attempts_are_throttled(world: World, settings: Any) -> None:
    from rest_framework.throttling import ScopedRateThrottle

    settings.AXES_ENABLED = False
    rates = dict(ScopedRateThrottle.THROTTLE_RATES)
    ScopedRateThrottle.THROTTLE_RATES = {**rates, "login": "3/min"}
    try:
        statuses = [login(f"nobody{i}@example.org", "x").status_code for i in range(5)]
    finally:
        ScopedRateThrottle.THROTTLE_RATES = rates
    assert statuses[:3] == [400, 400, 400]
    assert statuses[3:] == [429, 429]
