"""Who may see what on the nurse pages: the user's care teams and the current one.

Every page runs through ``staff_view``: the user is logged in, is care staff, and belongs to at
least one care team (a superuser sees every team). Lists show the *current* team (kept in the
session, switched with the team switcher); a patient, item, appointment or escalation is found
only among the user's teams, so another team's record is a 404, never a 403 that confirms it exists.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from patients.models import CareTeam, Patient, User

SESSION_TEAM_KEY = "web_team_id"

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Scope:
    user: User
    teams: tuple[CareTeam, ...]
    team: CareTeam

    @property
    def team_ids(self) -> list[int]:
        """Every team of the user: what a detail page may show."""
        return [t.pk for t in self.teams]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.team.timezone)

    def patients(self) -> QuerySet[Patient]:
        return Patient.objects.filter(care_team_id__in=self.team_ids)


def user_teams(user: User) -> list[CareTeam]:
    if user.is_superuser:
        return list(CareTeam.objects.order_by("name"))
    return list(CareTeam.objects.filter(memberships__user=user).order_by("name"))


def resolve_scope(request: HttpRequest, user: User) -> Scope | None:
    teams = user_teams(user)
    if not teams:
        return None
    wanted = request.session.get(SESSION_TEAM_KEY)
    team = next((t for t in teams if t.pk == wanted), teams[0])
    if wanted != team.pk:
        request.session[SESSION_TEAM_KEY] = team.pk
    return Scope(user=user, teams=tuple(teams), team=team)


def is_care_staff(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and (user.is_superuser or user.is_care_staff))


View = Callable[..., HttpResponse]
F = TypeVar("F", bound=View)


def staff_view(view: F) -> F:
    """Log in, be care staff in a care team; the view gets ``request.scope`` and the team's time zone."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_care_staff(user):
            raise PermissionDenied
        scope = resolve_scope(request, user)
        if scope is None:
            return render(request, "web/no_team.html", status=403)
        request.scope = scope  # type: ignore[attr-defined]  # set for the view and the templates
        with timezone.override(scope.tz):
            return view(request, *args, **kwargs)

    return cast(F, wrapper)


def scope_of(request: HttpRequest) -> Scope:
    return cast(Scope, request.scope)  # type: ignore[attr-defined]  # set by staff_view


def get_scoped(queryset: QuerySet[M], team_path: str, scope: Scope, **lookup: Any) -> M:
    """One row among the user's teams, or 404 (another team's row is indistinguishable from none)."""
    try:
        return queryset.get(**{f"{team_path}__in": scope.team_ids}, **lookup)
    except (ObjectDoesNotExist, ValueError) as exc:
        raise Http404 from exc
