"""A lean path for the patient's polled reads: ``GET /api/v1/me/plan`` and ``GET /api/v1/me/booklet``.

The app polls these two with a bearer token, and most answers are a 304 or a body already
rendered, so DRF's machinery around the read costs more than the read: the ``Request`` wrapper,
content negotiation, versioning, the authenticator loop, the exception handling and the
``Response`` plumbing took about 0.25 ms of a plan 304's 1.2 ms of Python (in process, against
0.25 ms for the whole bare Django view). ``polled_get`` answers the common case
itself, with the same parts DRF would call, in the same order:

- content: no query string and ``Accept`` empty, ``*/*`` or the view's first renderer's type
  (what ``backend.conditional.PolledNegotiation`` answers at once);
- authentication: a ``Bearer`` header, through the very ``JWTAuthentication`` DRF would use
  (the token decoded once per process, the one auth query, signed-out sessions and inactive
  users refused); the booklet's revision is read by that same query (``at_auth``), so a booklet
  304 costs one statement, as the plan's does;
- the view's permission classes (``IsPatient``: scoping is the patient read with the token's user);
- the view's throttles, each with its own cache key and history;
- the read itself, then DRF's default response headers (``Allow``).

Anything else (another method, ``HEAD``, another ``Accept``, a query string, no bearer token, a
bad, expired or signed-out token, a user without a patient record, a throttled request) goes to
the DRF view as it is, which answers it exactly as before (the 401, 403, 406 and 429 problem
documents, their ``WWW-Authenticate`` and ``Retry-After``). So the lean path never answers an
error itself: the worst a fall-back costs is the auth query twice. The URL patterns, the view
classes and the OpenAPI schema are unchanged (``PolledGetView.as_view`` keeps DRF's attributes
on the view function); tests/api/test_polled.py compares both paths' statuses, headers and bodies.

One difference in the throttled case only: when one throttle allows a request and a later one
refuses it, the first has recorded it, and DRF, answering the 429, checks it again. With the
default throttles (anonymous and per user) only one of them counts an authenticated request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers
from rest_framework.exceptions import APIException
from rest_framework.views import APIView

if TYPE_CHECKING:
    from rest_framework.views import AsView, GenericView

    from backend.auth_query import AtAuth
    from patients.models import Patient

Read = Callable[[HttpRequest, "Patient"], HttpResponse]


class PolledGetView(APIView):
    """An ``APIView`` whose ``GET`` goes through ``polled_get``: subclasses define ``polled``, and
    ``at_auth`` for a value ``polled`` needs read with the token's user (no query of its own)."""

    at_auth: ClassVar[AtAuth | None] = None

    @staticmethod
    def polled(request: HttpRequest, patient: Patient) -> HttpResponse:
        """The read, for an authenticated, permitted, unthrottled patient."""
        raise NotImplementedError

    @classmethod
    def as_view(cls, **initkwargs: Any) -> AsView[GenericView]:
        return polled_get(super().as_view(**initkwargs), cls.polled)


class _Lean:
    """What ``polled_get`` reads from the view class, once per process (settings are loaded)."""

    def __init__(self, view_class: type[APIView], initkwargs: dict[str, Any]) -> None:
        from backend.auth import JWTAuthentication  # lazy: backend.auth is imported by the settings

        view = view_class(**initkwargs)
        self.at_auth: AtAuth | None = getattr(view_class, "at_auth", None)
        if hasattr(view, "get") and not hasattr(view, "head"):  # as View.setup does for every request
            view.head = view.get  # type: ignore[attr-defined]  # set on the instance, as Django does
        self.view = view
        self.media_types = ("", "*/*", str(view.renderer_classes[0].media_type))
        # Only the bearer authenticator, and only where DRF would try it first.
        authenticators = view.get_authenticators()
        self.authenticator = (
            authenticators[0] if authenticators and type(authenticators[0]) is JWTAuthentication else None
        )
        self.permissions = view.get_permissions()  # stateless: one instance each is what DRF builds anyway
        self.throttle_classes = list(view.throttle_classes)
        headers = dict(view.default_response_headers)
        vary = headers.pop("Vary", None)  # added to the response's Vary, as DRF does
        self.vary = None if vary is None else [name.strip() for name in vary.split(",")]
        self.headers = list(headers.items())


# Every view ``polled_get`` made, with its lean answer: ``PolledMiddleware`` finds their paths.
_POLLED: list[tuple[Callable[..., HttpResponseBase], Callable[[HttpRequest], HttpResponse | None]]] = []
# Set on a request the middleware already tried: the view does not try again.
_TRIED = "_carnet_polled_tried"


def polled_get(drf_view: AsView[GenericView], read: Read) -> AsView[GenericView]:
    """``drf_view`` (an ``APIView.as_view()``) whose plain ``GET`` is answered by ``read`` without
    DRF's dispatch, after the same authentication, permissions and throttles."""
    view_class = drf_view.cls
    initkwargs = dict(drf_view.view_initkwargs)
    lean: list[_Lean] = []

    def lean_answer(request: HttpRequest) -> HttpResponse | None:
        if not lean:
            lean.append(_Lean(view_class, initkwargs))
        return _answer(lean[0], request, read)

    @functools.wraps(drf_view)  # cls, initkwargs, view_class, csrf_exempt: as DRF's view function
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "GET" and not args and not kwargs and not getattr(request, _TRIED, False):
            response = lean_answer(request)
            if response is not None:
                return response
        return drf_view(request, *args, **kwargs)

    _POLLED.append((view, lean_answer))
    return cast("AsView[GenericView]", view)


class PolledMiddleware:
    """The lean path answered before the middleware that has nothing to do for it.

    A polled ``GET`` with a bearer token is answered here, right after ``LocaleMiddleware`` (its
    language) and inside the security, static-file, session and frame-options middleware (their
    headers), skipping ``CommonMiddleware``, CSRF, ``AuthenticationMiddleware``, messages, the
    history and django-axes middleware: none of them has anything to do for a token-authenticated
    read that writes nothing (no cookie is read or set, nothing is saved, no form, no login), and
    together they were ~0.07 ms of the ~0.33 ms a kept plan costs in process. What
    ``CommonMiddleware`` would add, the ``Content-Length``, is added here. Anything the lean path
    does not answer (``_answer`` returns None) goes down the whole stack to the view, which does
    not try the lean path again. The paths are those the current URLconf gives the views
    ``polled_get`` made (``reverse``), found once per URLconf.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self._paths: dict[object, dict[str, Callable[[HttpRequest], HttpResponse | None]]] = {}

    def _answers(self, request: HttpRequest) -> dict[str, Callable[[HttpRequest], HttpResponse | None]]:
        from django.urls import NoReverseMatch, get_resolver

        resolver = get_resolver(getattr(request, "urlconf", None))
        found = self._paths.get(resolver)
        if found is None:
            found = {}
            for view, lean_answer in _POLLED:
                try:
                    found["/" + resolver.reverse(view)] = lean_answer  # type: ignore[arg-type]  # a view function reverses too
                except NoReverseMatch:  # not routed by this URLconf
                    continue
            self._paths[resolver] = found
        return found

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.method == "GET" and "HTTP_AUTHORIZATION" in request.META:
            lean_answer = self._answers(request).get(request.path_info)
            if lean_answer is not None:
                setattr(request, _TRIED, True)
                response = lean_answer(request)
                if response is not None:
                    if not response.streaming and not response.has_header("Content-Length"):  # as CommonMiddleware
                        response["Content-Length"] = str(len(response.content))
                    return response
        return self.get_response(request)


def _answer(lean: _Lean, request: HttpRequest, read: Read) -> HttpResponse | None:
    """``read``'s response with DRF's headers, or None: DRF must answer this request."""
    meta = request.META
    if lean.authenticator is None or meta.get("QUERY_STRING") or meta.get("HTTP_ACCEPT", "") not in lean.media_types:
        return None
    authenticator = lean.authenticator
    try:
        header = authenticator.get_header(request)  # type: ignore[arg-type]  # reads request.META only
        raw = None if header is None else authenticator.get_raw_token(header)
        if raw is None:
            return None
        user = authenticator.get_user(authenticator.get_validated_token(raw), at_auth=lean.at_auth)
    except APIException:  # a malformed, bad, expired or signed-out token: DRF's 401
        return None
    request.user = user  # as DRF's Request sets it on the request it wraps
    if not all(permission.has_permission(request, lean.view) for permission in lean.permissions):  # type: ignore[arg-type]  # reads request.user
        return None
    for throttle_class in lean.throttle_classes:
        if not throttle_class().allow_request(request, lean.view):  # type: ignore[arg-type]  # user and META
            return None
    patient = getattr(user, "patient", None)
    if patient is None:
        return None
    response = read(request, patient)
    if lean.vary is not None:
        patch_vary_headers(response, lean.vary)
    for key, value in lean.headers:
        response[key] = value
    return response
