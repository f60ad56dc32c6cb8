"""Login (throttled per client IP), logout, the care-team switcher and the language switch."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

from patients.models import User
from web.forms import LoginForm, TeamForm
from web.scope import SESSION_TEAM_KEY, is_care_staff, scope_of, staff_view


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or what the outermost of CARNET_TRUSTED_PROXIES proxies saw."""
    proxies = int(getattr(settings, "CARNET_TRUSTED_PROXIES", 0))
    forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
    if proxies and len(forwarded) >= proxies:
        return str(forwarded[-proxies])
    return str(request.META.get("REMOTE_ADDR", ""))


def axes_enabled() -> bool:
    return "axes" in settings.INSTALLED_APPS


class StaffLoginForm(LoginForm):
    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if not is_care_staff(user):
            raise self.get_invalid_login_error()


class ThrottledLoginView(auth_views.LoginView):
    """Django's LoginView. When django-axes is installed it counts failures (the API's throttling);
    otherwise a per-IP counter in the cache locks the form after too many failures."""

    template_name = "web/login.html"
    authentication_form = StaffLoginForm
    redirect_authenticated_user = True

    def _key(self) -> str:
        return f"web-login-failures:{client_ip(self.request)}"

    @staticmethod
    def limit() -> int:
        return int(getattr(settings, "CARNET_LOGIN_FAILURE_LIMIT", 5))

    @staticmethod
    def lockout_seconds() -> int:
        return int(getattr(settings, "CARNET_LOGIN_LOCKOUT_SECONDS", 900))

    def locked(self) -> bool:
        return not axes_enabled() and int(cache.get(self._key(), 0)) >= self.limit()

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "POST" and self.locked():
            response = render(request, "web/login_locked.html", {"minutes": self.lockout_seconds() // 60}, status=429)
            response["Retry-After"] = str(self.lockout_seconds())
            return response
        return super().dispatch(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        if not axes_enabled():
            key = self._key()
            cache.add(key, 0, self.lockout_seconds())
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, self.lockout_seconds())
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        cache.delete(self._key())
        response = super().form_valid(form)
        language = cast(User, form.get_user()).language
        if language in dict(settings.LANGUAGES):
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                path=settings.LANGUAGE_COOKIE_PATH,
                samesite="Lax",
                secure=settings.LANGUAGE_COOKIE_SECURE,
                httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
            )
        return response


class StaffLogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]


@require_POST
@staff_view
def team_switch(request: HttpRequest) -> HttpResponse:
    scope = scope_of(request)
    form = TeamForm(request.POST, teams=scope.teams)
    if form.is_valid():
        request.session[SESSION_TEAM_KEY] = form.cleaned_data["team"]
    nxt = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}):
        nxt = "/"
    # A patient or appointment URL of the previous team stays valid (detail pages read every team).
    return redirect(nxt)


@require_POST
def language_switch(request: HttpRequest) -> HttpResponse:
    """Django's set_language, and the choice saved as the user's language for their next login."""
    response = set_language(request)
    language = request.POST.get("language", "")
    user = request.user
    if isinstance(user, User) and language in dict(settings.LANGUAGES) and user.language != language:
        user.language = language
        user.save(update_fields=["language"])
    if not isinstance(response, HttpResponseRedirect) and response.status_code == 204:
        return redirect("/")
    return response
