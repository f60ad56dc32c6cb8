"""Plan endpoints: the preview computes a plan from facts given in the request, storing nothing."""

from __future__ import annotations

from typing import Any

from django.utils.translation import get_language
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.api import ProblemSerializer, problem
from scheduling.rules import preview
from scheduling.rules.errors import RuleInputError


class IsCareStaff(BasePermission):
    message = "Only care staff may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and getattr(user, "is_care_staff", False))


class PreviewRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]  # schema only
    today = serializers.DateField()
    config = serializers.DictField(required=False)
    patient = serializers.DictField()
    courses = serializers.ListField(child=serializers.DictField())
    doses = serializers.ListField(child=serializers.DictField(), required=False)
    labs = serializers.ListField(child=serializers.DictField(), required=False)
    dental = serializers.ListField(child=serializers.DictField(), required=False)
    comedications = serializers.ListField(child=serializers.DictField(), required=False)


class PreviewResponseSerializer(serializers.Serializer):  # type: ignore[type-arg]  # schema only
    items = serializers.ListField(child=serializers.DictField())
    flags = serializers.ListField(child=serializers.DictField())
    labs = serializers.DictField()


def request_language(request: Request) -> str:
    lang = (get_language() or "fr")[:2]
    return lang if lang in ("fr", "en") else "fr"


class PlanPreviewView(APIView):
    """``POST /api/v1/plan/preview``: the plan for the facts in the body (docs/plan-preview.md)."""

    permission_classes = [IsCareStaff]

    @extend_schema(
        operation_id="plan_preview",
        request=PreviewRequestSerializer,
        responses={200: PreviewResponseSerializer, 400: ProblemSerializer, 401: ProblemSerializer,
                   403: ProblemSerializer},
        examples=[OpenApiExample("Osteoporosis, first dose", value={
            "today": "2026-06-01",
            "patient": {"birth_date": "1958-04-12", "sex": "F", "timezone": "Europe/Paris"},
            "courses": [{"protocol": "denosumab_op_60mg_q6m", "start_date": "2026-01-15"}],
            "doses": [{"protocol": "denosumab_op_60mg_q6m", "given_at": "2026-01-15"}],
        }, request_only=True)],
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            return problem(400, "The body must be a JSON object.", field="body", code="invalid")
        try:
            body = preview.preview(dict(request.data), lang=request_language(request))
        except RuleInputError as exc:
            return problem(400, exc.message, field=exc.field, code="invalid")
        return Response(body)
