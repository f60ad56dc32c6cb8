"""API plumbing shared by every app: RFC 9457 problem details for every error.

Every error the API returns has one shape (``ProblemSerializer``), with the field at fault in
``field`` and every field's messages in ``errors``, served as ``application/problem+json``.
Messages follow ``Accept-Language`` (fr, en): DRF's and Django's own messages come translated,
ours go through gettext (``locale/``). ``errors(400, 404, …)`` documents them in the schema.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from backend.errors import CarnetError

if TYPE_CHECKING:
    from patients.models import User

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemSerializer(serializers.Serializer):  # type: ignore[type-arg]  # schema only
    """RFC 9457 problem details, with the field at fault."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    field = serializers.CharField(required=False, allow_null=True)
    code = serializers.CharField(required=False)
    errors = serializers.DictField(  # type: ignore[assignment]  # the problem's member; this serializer documents only
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


def errors(*codes: int) -> dict[Any, Any]:
    """Schema entries for the error statuses an operation may return, as problem details."""
    return {(code, PROBLEM_CONTENT_TYPE): ProblemSerializer for code in codes}


def problem(
    status_code: int,
    detail: str,
    *,
    field: str | None = None,
    code: str = "error",
    errors: dict[str, list[str]] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"https://carnet.example/problems/{code}",
        "title": _problem_title(status_code),
        "status": status_code,
        "detail": detail,
        "field": field,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    return Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def _problem_title(status_code: int) -> str:
    return {
        400: _("Invalid input"),
        401: _("Authentication required"),
        403: _("Forbidden"),
        404: _("Not found"),
        405: _("Method not allowed"),
        406: _("Not acceptable"),
        409: _("Conflict"),
        415: _("Unsupported media type"),
        422: _("Unprocessable request"),
        429: _("Too many requests"),
    }.get(status_code, _("Error"))


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = (
                "non_field_errors"
                if key in ("non_field_errors", "__all__") and not prefix
                else (f"{prefix}.{key}" if prefix else str(key))
            )
            out.update(_flatten(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(v, (dict, list)) for v in detail):
            out[prefix or "non_field_errors"] = [str(v) for v in detail]
        else:
            for index, value in enumerate(detail):
                out.update(_flatten(value, f"{prefix}[{index}]"))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, CarnetError):
        # Services raise plain English; a message with a catalogue entry is translated here.
        field_errors = getattr(exc, "errors", None)
        if field_errors:
            field_errors = {name: [_(m) for m in messages] for name, messages in field_errors.items()}
        result = problem(exc.status, _(exc.message), field=exc.field, code=exc.code, errors=field_errors)
        for header, value in getattr(exc, "headers", {}).items():
            result[header] = value
        return result
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        field, messages = next(iter(errors.items()))
        return problem(status.HTTP_400_BAD_REQUEST, messages[0], field=field, code="validation_error", errors=errors)
    if isinstance(exc, exceptions.ParseError):
        return problem(400, str(exc.detail), field="body", code="malformed")
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = exc.default_code if isinstance(exc, exceptions.APIException) else "error"
    result = problem(response.status_code, str(detail), code=str(code))
    for header in ("Retry-After", "WWW-Authenticate", "Allow"):
        if header in response:
            result[header] = response[header]
    return result


# --- shared by the API views ------------------------------------------------------------------


class ReadModelSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """A read-only view of a model: a blank text or choice column is documented as possibly ``""``.

    DRF drops ``allow_blank`` from read-only fields, so the schema would promise a value from the
    choices where the row holds an empty string.
    """

    def include_extra_kwargs(
        self, kwargs: MutableMapping[str, Any], extra_kwargs: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        blank = kwargs.get("allow_blank", False)
        kwargs = super().include_extra_kwargs(kwargs, extra_kwargs)
        if blank:
            kwargs["allow_blank"] = True
        return kwargs


@extend_schema_field(
    {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$", "example": "09:00:00"}
)
class LocalTimeField(serializers.TimeField):
    """A wall-clock time of day (local to the reader's time zone), without an offset."""


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class IsCareStaff(BasePermission):
    """A nurse, physician or care-team admin; what they reach is scoped by their care teams."""

    message = gettext_lazy("Only care staff may do this.")

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and getattr(user, "is_care_staff", False))


class IsPatient(BasePermission):
    """A user with a patient record (the ``/me`` endpoints)."""

    message = gettext_lazy("Only a patient with a booklet may do this.")

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and getattr(user, "patient", None) is not None)


def uuid_or_404(raw: str) -> uuid.UUID:
    """A public id from the URL; anything that is not a UUID is simply not found."""
    try:
        return uuid.UUID(str(raw))
    except ValueError as exc:
        raise Http404 from exc


def api_language(request: HttpRequest, default: str | None = None) -> str:
    """``Accept-Language`` when the request sends one (fr or en), else ``default``, else the active one."""
    active = (get_language() or "fr")[:2]
    if request.META.get("HTTP_ACCEPT_LANGUAGE") or default is None:  # ``request.headers`` would parse all of META
        return active if active in ("fr", "en") else "fr"
    return default if default in ("fr", "en") else "fr"


def id_parameter(name: str = "id", description: str = "The object's public UUID.") -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH, description=description)


def user_of(request: Request) -> User:
    """The authenticated user of a request that passed an authenticated permission class."""
    from patients.models import User

    user = request.user
    if not isinstance(user, User):
        raise exceptions.NotAuthenticated()
    return user
