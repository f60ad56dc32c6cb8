"""The authentication endpoints (``/api/v1/auth/…``); the mechanics are in ``backend.auth``."""

from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import ensure_csrf_cookie
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from backend.api import errors
from backend.auth import locked_out, token_revoke, tokens_issue, tokens_revoke_all, tokens_rotate
from backend.errors import CarnetError
from patients.models import User

# --- serializers ----------------------------------------------------------------------------


class LoginSerializer(serializers.Serializer):  # type: ignore[type-arg]
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=256, trim_whitespace=False, style={"input_type": "password"})


class TokenPairSerializer(serializers.Serializer):  # type: ignore[type-arg]
    access = serializers.CharField(help_text=gettext_lazy("Bearer token for the Authorization header (short-lived)."))
    refresh = serializers.CharField(help_text=gettext_lazy("Exchange at /auth/token/refresh; single use."))


class RefreshSerializer(serializers.Serializer):  # type: ignore[type-arg]
    refresh = serializers.CharField(max_length=4096)


class SignedOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    revoked = serializers.IntegerField(help_text=gettext_lazy("Refresh tokens revoked."))


class CsrfSerializer(serializers.Serializer):  # type: ignore[type-arg]
    csrf_token = serializers.CharField()


class WhoAmISerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(source="public_id")
    email = serializers.EmailField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    role = serializers.CharField()
    language = serializers.CharField()
    is_patient = serializers.SerializerMethodField()
    care_teams = serializers.SerializerMethodField()

    def get_is_patient(self, user: User) -> bool:
        return hasattr(user, "patient")

    def get_care_teams(self, user: User) -> list[dict[str, str]]:
        return [
            {"id": str(m.care_team.public_id), "name": m.care_team.name, "role": m.role}
            for m in user.memberships.select_related("care_team").order_by("care_team__name")
        ]


# --- views ----------------------------------------------------------------------------------


def _check_credentials(request: Request, data: dict[str, str]) -> User:
    django_request = request._request
    email = data["email"].strip().lower()
    if locked_out(django_request, email):
        raise LockedOut()
    user = authenticate(django_request, email=email, password=data["password"])
    if user is None:
        if locked_out(django_request, email):
            raise LockedOut()
        raise CarnetError(_("Wrong email or password."), field="password", code="invalid_credentials")
    assert isinstance(user, User)
    return user


class LockedOut(CarnetError):
    status = 429
    code = "locked_out"

    def __init__(self) -> None:
        from django.conf import settings

        super().__init__(_("Too many failed logins; try again later."), field="email")
        self.headers = {"Retry-After": str(int(settings.AXES_COOLOFF_TIME.total_seconds()))}


class _LoginView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


class TokenObtainView(_LoginView):
    @extend_schema(
        operation_id="auth_token_obtain",
        request=LoginSerializer,
        responses={200: TokenPairSerializer, **errors(400, 429)},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        """Log in with email and password; returns an access and a refresh token."""
        body = LoginSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = _check_credentials(request, body.validated_data)
        return Response(tokens_issue(user))


class TokenRefreshView(_LoginView):
    @extend_schema(
        operation_id="auth_token_refresh",
        request=RefreshSerializer,
        responses={200: TokenPairSerializer, **errors(400, 429)},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        """Exchange a refresh token (once) for a new access and refresh token."""
        body = RefreshSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(tokens_rotate(body.validated_data["refresh"]))


class LogoutView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_logout",
        request=RefreshSerializer,
        responses={204: None, **errors(400, 401, 429)},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        """Revoke this device's refresh token; its access tokens stop working at once."""
        body = RefreshSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token_revoke(raw_refresh=body.validated_data["refresh"], user=request.user)  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)


class SignOutEverywhereView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_sign_out_everywhere",
        request=None,
        responses={200: SignedOutSerializer, **errors(401, 429)},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        """Revoke every refresh token of the user (every device), and end this session."""
        count = tokens_revoke_all(request.user)  # type: ignore[arg-type]
        if request.user.is_authenticated and request.session.session_key:
            logout(request._request)
        return Response({"revoked": count})


class WhoAmIView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_whoami", responses={200: WhoAmISerializer, **errors(401, 429)}, tags=["auth"])
    def get(self, request: Request) -> Response:
        """Who is logged in: role, language and care teams."""
        return Response(WhoAmISerializer(request.user).data)


@method_decorator(ensure_csrf_cookie, name="dispatch")
class SessionCsrfView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(operation_id="auth_session_csrf", responses={200: CsrfSerializer, **errors(429)}, tags=["auth"])
    def get(self, request: Request) -> Response:
        """Set the CSRF cookie; send its value back in ``X-CSRFToken`` on session writes."""
        return Response({"csrf_token": get_token(request._request)})


class SessionLoginView(_LoginView):
    @extend_schema(
        operation_id="auth_session_login",
        request=LoginSerializer,
        responses={200: WhoAmISerializer, **errors(400, 403, 429)},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        """Staff pages: log in with the session cookie (CSRF token required)."""
        # The login sets a session cookie, so it is CSRF-checked like any session write
        # (a refusal is a 403 problem, not Django's HTML page).
        SessionAuthentication().enforce_csrf(request)
        body = LoginSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = _check_credentials(request, body.validated_data)
        login(request._request, user, backend="django.contrib.auth.backends.ModelBackend")
        return Response(WhoAmISerializer(user).data)


class SessionLogoutView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_session_logout", request=None, responses={204: None, **errors(401, 403, 429)}, tags=["auth"]
    )
    def post(self, request: Request) -> Response:
        """End the browser session (SessionAuthentication enforces CSRF here)."""
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CarnetJWTScheme(SimpleJWTScheme):  # type: ignore[no-untyped-call]  # drf-spectacular's extension base is untyped
    """Documents ``backend.auth.JWTAuthentication`` as the bearer scheme in the schema."""

    target_class = "backend.auth.JWTAuthentication"
    name = "jwtAuth"
