"""Authentication: JWT for the mobile app, the session for staff pages, throttled failed logins.

- ``POST /api/v1/auth/token`` gives a short-lived access token (SIMPLE_JWT, ~10 minutes) and a
  refresh token. Every refresh token is recorded (simplejwt's token_blacklist app); using one
  rotates it, and the used one is blacklisted.
- Each access token carries ``sid``, the id (jti) of the refresh token it came from, and is
  refused as soon as that refresh token is blacklisted. So logout and "sign out everywhere" take
  effect at once, not when the access token expires.
- Failed logins are counted by django-axes per email and IP (``AxesBackend``); a locked-out
  login gets 429. A DRF scoped throttle (``login``) also limits login attempts per client.
- ``/api/v1/auth/session/*`` logs a browser in with the session; the login enforces CSRF.

The views are in ``backend.auth_api`` (this module is imported by the settings, so stays light).
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from rest_framework_simplejwt.authentication import JWTAuthentication as BaseJWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from backend.errors import CarnetError
from patients.models import User

SESSION_CLAIM = "sid"


# --- django-axes --------------------------------------------------------------------------------


class AxesBackend(AxesStandaloneBackend):  # type: ignore[misc]  # axes ships no type hints
    """django-axes' lockout check, skipped when there is no request to count against.

    Django's test client and management commands call ``authenticate()`` without a request;
    django-axes would refuse those outright. Every HTTP login passes its request and is counted.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)  # type: ignore[no-any-return]  # axes untyped


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The login being attempted: ``email`` (API) or ``username`` (Django's login form)."""
    creds = credentials or {}
    value = creds.get("email") or creds.get("username") or request.POST.get("username") or request.POST.get("email")
    return str(value or "").strip().lower()


def locked_out(request: HttpRequest, email: str) -> bool:
    return bool(getattr(settings, "AXES_ENABLED", True)) and not AxesProxyHandler.is_allowed(request, {"email": email})


# --- tokens ---------------------------------------------------------------------------------


class CarnetRefreshToken(RefreshToken):
    """A refresh token whose access tokens name it (``sid``), so revoking it revokes them."""

    @property
    def access_token(self) -> AccessToken:
        access = super().access_token
        access[SESSION_CLAIM] = self[jwt_settings.JTI_CLAIM]
        return access


class JWTAuthentication(BaseJWTAuthentication):
    """simplejwt's bearer authentication, refusing access tokens of a revoked refresh token.

    One query per request, built once (``backend.auth_query``): the user, their patient record
    (every ``/me`` endpoint reads it) and whether the session was signed out, where simplejwt and
    ``IsPatient`` would make three. simplejwt's checks (active user, revoke claim) are kept.
    """

    def get_validated_token(self, raw_token: bytes) -> Any:
        from backend.auth_query import validated_token  # lazy: this module is imported by the settings

        return validated_token(raw_token, super().get_validated_token)  # decoded once per process

    def get_user(self, validated_token: Any, *, at_auth: Any = None) -> Any:
        """The token's user; ``at_auth`` (``backend.auth_query.AtAuth``): a value read with it."""
        from backend.auth_query import token_user  # lazy: this module is imported by the settings

        sid = validated_token.get(SESSION_CLAIM)
        if not sid:
            raise InvalidToken(_("This session was signed out."))
        if jwt_settings.USER_ID_CLAIM not in validated_token:
            raise InvalidToken(_("Token contained no recognizable user identification"))
        try:
            found = token_user(user_id=validated_token[jwt_settings.USER_ID_CLAIM], session=str(sid), extra=at_auth)
        except ValidationError:  # not a UUID
            found = None
        if found is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        user, signed_out = found
        if signed_out:
            raise InvalidToken(_("This session was signed out."))
        if jwt_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if jwt_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            jwt_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        return user


def tokens_issue(user: User) -> dict[str, str]:
    refresh = CarnetRefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def tokens_rotate(raw_refresh: str) -> dict[str, str]:
    """Use a refresh token once: it is blacklisted and a new pair is issued."""
    try:
        refresh = CarnetRefreshToken(raw_refresh)  # type: ignore[arg-type]  # str is accepted at runtime
    except TokenError as exc:
        raise CarnetError(
            _("This refresh token is invalid, expired or revoked."), field="refresh", code="token_not_valid"
        ) from exc
    user = User.objects.filter(public_id=refresh.get(jwt_settings.USER_ID_CLAIM), is_active=True).first()
    if user is None:
        raise CarnetError(
            _("This refresh token is invalid, expired or revoked."), field="refresh", code="token_not_valid"
        )
    refresh.blacklist()
    return tokens_issue(user)


def token_revoke(*, raw_refresh: str, user: User) -> None:
    """Logout: blacklist one refresh token of ``user`` (and so the access tokens it gave)."""
    try:
        refresh = CarnetRefreshToken(raw_refresh, verify=False)  # type: ignore[arg-type]  # str accepted
        refresh.verify_token_type()
    except TokenError as exc:
        raise CarnetError(_("This is not a refresh token."), field="refresh", code="token_not_valid") from exc
    if str(refresh.get(jwt_settings.USER_ID_CLAIM)) != str(user.public_id):
        raise CarnetError(_("This is not one of your refresh tokens."), field="refresh", code="token_not_valid")
    refresh.blacklist()


def tokens_revoke_all(user: User) -> int:
    """Sign out everywhere: blacklist every outstanding refresh token of ``user``."""
    outstanding = list(OutstandingToken.objects.filter(user=user).exclude(blacklistedtoken__isnull=False))
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=t) for t in outstanding], ignore_conflicts=True)
    return len(outstanding)


def axes_lockout_response(request: HttpRequest, original_response: Any, credentials: Any) -> HttpResponse:
    """A locked-out login: problem details (429) on the API, a short text elsewhere."""
    from axes.helpers import get_cool_off, get_lockout_message

    cool_off = get_cool_off(request)
    retry_after = str(int(cool_off.total_seconds())) if cool_off else "900"
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            {
                "type": "https://carnet.example/problems/locked_out",
                "title": _("Too many requests"),
                "status": 429,
                "detail": _("Too many failed logins; try again later."),
                "field": "email",
                "code": "locked_out",
            },
            status=429,
            content_type="application/problem+json",
        )
    else:
        response = HttpResponse(get_lockout_message(), status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = retry_after
    return response
