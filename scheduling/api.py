"""Plan endpoints: the stored plan (patient and staff), the calendar feed link, appointments,
the worklist, escalations, and the preview (a plan computed from facts in the request, storing nothing).

Reads are scoped to ``user_of(request)`` (their own plan, or their care teams' patients); writes go
through ``scheduling.appointments``, ``scheduling.services``, ``scheduling.feeds`` and
``notifications.services``. Flags are explained in the reader's language.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.api import (
    IsCareStaff,
    IsPatient,
    Pagination,
    api_language,
    errors,
    id_parameter,
    problem,
    user_of,
    uuid_or_404,
)
from backend.auth_query import plan_revision_at_auth
from backend.conditional import (
    IF_NONE_MATCH,
    NOT_MODIFIED,
    BodyCache,
    PolledNegotiation,
    etag_matches,
    json_bytes_response,
    json_text,
    not_modified,
)
from backend.errors import CarnetError, NotFound
from backend.polled import PolledGetView
from idempotency.services import idempotent
from patients.api import scoped_patients, scoped_records, staff_patient
from patients.models import Patient, User
from scheduling import appointments as appointment_services
from scheduling import feeds
from scheduling import services as plan_services
from scheduling.models import Appointment, Escalation, PlanItem, PlanState
from scheduling.models_feeds import CalendarFeed
from scheduling.plan_state import flag_out, open_items, open_items_json, plan_state_and_items_json, plan_state_of
from scheduling.rules import preview
from scheduling.rules.errors import RuleInputError
from scheduling.serializers import (
    AppointmentBookSerializer,
    AppointmentCancelSerializer,
    AppointmentMoveSerializer,
    AppointmentSerializer,
    EscalationResolveSerializer,
    EscalationSerializer,
    PlanSerializer,
    WorklistItemSerializer,
)
from scheduling.worklist import staff_team_ids, worklist_items

STAFF_ERRORS = errors(400, 401, 403, 404, 409, 422, 429)
READ_ERRORS = errors(401, 403, 404, 429)

__all__ = ["IsCareStaff", "PlanPreviewView", "request_language"]


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
    return api_language(request)


class PlanPreviewView(APIView):
    """``POST /api/v1/plan/preview``: the plan for the facts in the body (docs/plan-preview.md)."""

    permission_classes = [IsCareStaff]

    @extend_schema(
        operation_id="plan_preview",
        request=PreviewRequestSerializer,
        responses={200: PreviewResponseSerializer, **errors(400, 401, 403, 429)},
        tags=["staff"],
        examples=[
            OpenApiExample(
                "Osteoporosis, first dose",
                value={
                    "today": "2026-06-01",
                    "patient": {"birth_date": "1958-04-12", "sex": "F", "timezone": "Europe/Paris"},
                    "courses": [{"protocol": "denosumab_op_60mg_q6m", "start_date": "2026-01-15"}],
                    "doses": [{"protocol": "denosumab_op_60mg_q6m", "given_at": "2026-01-15"}],
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            return problem(400, "The body must be a JSON object.", field="body", code="invalid")
        try:
            body = preview.preview(dict(request.data), lang=request_language(request))
        except RuleInputError as exc:
            return problem(400, exc.message, field=exc.field, code="invalid")
        return Response(body)


# --- the stored plan ----------------------------------------------------------------------------


# Part of the plan's ETag: bump it when the plan's JSON shape or its explanations change.
PLAN_FORMAT = "1"


def plan_flags(patient: Patient, *, lang: str, state: PlanState | None) -> list[dict[str, Any]]:
    """The patient-level flags of the stored plan, explained in ``lang``.

    A patient not re-planned since the plan state existed gets them from the rules once more.
    """
    if state is not None:
        return [flag_out(f, lang) for f in state.flags if isinstance(f, dict)]
    plan = plan_services.plan_compute(patient)
    return [flag_out(plan_services.flag_json(f), lang) for f in plan.flags if f.subject is None]


def plan_data(patient: Patient, *, lang: str, state: PlanState | None) -> dict[str, Any]:
    """Open items from the stored plan, patient-level flags from its state, explained in ``lang``.

    No rules run: the stored plan is kept current by every fact service and the nightly pass
    (statuses are those of the last re-plan, see ``scheduling.plan_state``).
    """
    today = plan_services.patient_today(patient)
    return {
        "today": today.isoformat(),
        "language": lang,
        "items": open_items(patient.pk, lang=lang, today=today),
        "flags": plan_flags(patient, lang=lang, state=state),
    }


def plan_json(
    patient: Patient, *, lang: str, state: PlanState | None, today: date | None = None, items: str | None = None
) -> bytes:
    """``plan_data`` as JSON, the items rendered by the database where it can (``open_items_json``,
    or ``items`` already read on ``today``, the patient's local date the ETag names)."""
    day = today or plan_services.patient_today(patient)
    envelope = json_text({"today": day.isoformat(), "language": lang})
    if items is None:
        items = open_items_json(patient.pk, lang=lang, today=day)
    flags = json_text(plan_flags(patient, lang=lang, state=state))
    return f'{envelope[:-1]},"items":{items},"flags":{flags}}}'.encode()


# Plans rendered by this process, by ETag (revision, local date, language, format): that is all
# the body depends on. A plan is ~15-30 KB: about 1,000 in the default 32 MiB.
PLANS = BodyCache(max_bytes=settings.CARNET_API_KEPT_BYTES)


def plan_response(request: HttpRequest, patient: Patient, *, lang: str) -> HttpResponse:
    """The plan with an ETag known before the work (revision, today, language): a 304 costs one
    query, or none after auth when the auth query read the revision (the patient's own plan);
    a body this process rendered for the same ETag is not rendered again."""
    # The patient's local date, once: the ETag names it and the items' days late are counted to it.
    today = plan_services.patient_today(patient)
    known = plan_revision_at_auth(patient)  # read with the token's user (GET /me/plan)
    if known is not None:
        etag = _plan_etag(known, today, lang)
        if etag_matches(request, etag):
            return not_modified(etag)
        if (kept := PLANS.get((patient.pk, etag))) is not None:
            return json_bytes_response(request, kept, etag=etag)
        # To be rendered: the state and the items in one statement, the ETag from its revision.
        if (read := plan_state_and_items_json(patient.pk, lang=lang, today=today)) is not None:
            return _plan_rendered(request, patient, lang=lang, today=today, state=read[0], items=read[1])
    stored = plan_state_of(patient.pk)
    if stored is None:  # not re-planned since plan states existed: flags from the rules, no ETag
        return json_bytes_response(request, plan_json(patient, lang=lang, state=None, today=today))
    return _plan_rendered(request, patient, lang=lang, today=today, state=stored)


def _plan_rendered(
    request: HttpRequest, patient: Patient, *, lang: str, today: date, state: PlanState, items: str | None = None
) -> HttpResponse:
    """The plan of ``state``'s revision on ``today``: 304, a body kept, or rendered (with ``items`` if read)."""
    etag = _plan_etag(state.revision, today, lang)
    if etag_matches(request, etag):
        return not_modified(etag)
    body = PLANS.get((patient.pk, etag))
    if body is None:
        body = plan_json(patient, lang=lang, state=state, today=today, items=items)
        PLANS.put((patient.pk, etag), body)
    return json_bytes_response(request, body, etag=etag)


def _plan_etag(revision: uuid.UUID, today: date, lang: str) -> str:
    return f'W/"plan-{revision.hex}-{today:%Y%m%d}-{lang}-{PLAN_FORMAT}"'


class MePlanView(PolledGetView):
    """``GET`` answered by ``backend.polled`` (the same checks, without DRF's dispatch); other methods by DRF."""

    permission_classes = [IsPatient]
    content_negotiation_class = PolledNegotiation

    @staticmethod
    def polled(request: HttpRequest, patient: Patient) -> HttpResponse:
        return plan_response(request, patient, lang=api_language(request, patient.language))

    @extend_schema(
        operation_id="me_plan",
        parameters=[IF_NONE_MATCH],
        responses={200: PlanSerializer, 304: NOT_MODIFIED, **errors(401, 403, 429)},
        tags=["me"],
    )
    def get(self, request: Request) -> HttpResponse:
        """My upcoming plan: each item's window and status, each flag explained in my language.

        Statuses are those of the last re-plan (every change to my booklet, and each night).
        Send the ``ETag`` back in ``If-None-Match``: 304 when nothing changed.
        """
        patient: Patient = user_of(request).patient
        return plan_response(request, patient, lang=api_language(request, patient.language))


class PatientPlanView(APIView):
    permission_classes = [IsCareStaff]
    content_negotiation_class = PolledNegotiation

    @extend_schema(
        operation_id="patients_plan",
        parameters=[id_parameter(), IF_NONE_MATCH],
        responses={200: PlanSerializer, 304: NOT_MODIFIED, **READ_ERRORS},
        tags=["staff"],
    )
    def get(self, request: Request, id: str) -> HttpResponse:
        """A patient's stored plan, with blocks and what lifts them."""
        return plan_response(request, staff_patient(request, id), lang=api_language(request))


# --- the patient's calendar feed (iCal) ----------------------------------------------------------


class CalendarFeedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    active = serializers.BooleanField()
    precise_titles = serializers.BooleanField()
    created_at = serializers.DateTimeField(allow_null=True)
    rotated_at = serializers.DateTimeField(allow_null=True)
    url = serializers.URLField(allow_null=True, help_text="Shown once, when issued; rotate to get a new one.")
    webcal_url = serializers.CharField(allow_null=True, help_text="The same link for calendar apps (webcal://).")


class CalendarFeedRotateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    precise_titles = serializers.BooleanField(required=False, help_text="Show what is due in event titles.")


def _live_feed(patient: Patient) -> CalendarFeed | None:
    return CalendarFeed.objects.filter(kind=CalendarFeed.Kind.PATIENT, patient=patient, revoked_at__isnull=True).first()


def _feed_data(feed: CalendarFeed | None, token: str | None = None) -> dict[str, Any]:
    urls = feeds.feed_urls(token) if token else {"https": None, "webcal": None}
    return {
        "active": feed is not None,
        "precise_titles": bool(feed and feed.precise_titles),
        "created_at": feed.created_at if feed else None,
        "rotated_at": feed.rotated_at if feed else None,
        "url": urls["https"],
        "webcal_url": urls["webcal"],
    }


class MeCalendarFeedView(APIView):
    permission_classes = [IsPatient]

    @extend_schema(
        operation_id="me_calendar_feed", responses={200: CalendarFeedSerializer, **errors(401, 403, 429)}, tags=["me"]
    )
    def get(self, request: Request) -> Response:
        """My calendar link's state. The secret link itself is shown only when issued (rotate)."""
        return Response(CalendarFeedSerializer(_feed_data(_live_feed(user_of(request).patient))).data)

    @extend_schema(
        operation_id="me_calendar_feed_revoke", responses={204: None, **errors(401, 403, 404, 429)}, tags=["me"]
    )
    def delete(self, request: Request) -> Response:
        """Revoke my calendar link: calendar apps stop receiving updates."""
        feed = _live_feed(user_of(request).patient)
        if feed is None:
            raise NotFound(_("There is no calendar link to revoke."))
        feeds.feed_revoke(feed=feed, by=user_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeCalendarFeedRotateView(APIView):
    permission_classes = [IsPatient]

    @extend_schema(
        operation_id="me_calendar_feed_rotate",
        request=CalendarFeedRotateSerializer,
        responses={200: CalendarFeedSerializer, **errors(400, 401, 403, 409, 422, 429)},
        tags=["me"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        """Issue my calendar link, or replace it (the old link stops working at once)."""
        body = CalendarFeedRotateSerializer(data=request.data if isinstance(request.data, dict) else None)
        body.is_valid(raise_exception=True)
        user: User = user_of(request)
        patient = user.patient
        precise = body.validated_data.get("precise_titles")
        with transaction.atomic():
            feed = _live_feed(patient)
            if feed is None:
                feed, token = feeds.feed_create(
                    kind=CalendarFeed.Kind.PATIENT, patient=patient, by=user, precise_titles=bool(precise)
                )
            else:
                if precise is not None:
                    feed = feeds.feed_update(feed=feed, by=user, precise_titles=precise)
                feed, token = feeds.feed_rotate(feed=feed, by=user)
        return Response(CalendarFeedSerializer(_feed_data(feed, token)).data)


# --- worklist -----------------------------------------------------------------------------------


class WorklistView(ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsCareStaff]
    serializer_class = WorklistItemSerializer
    pagination_class = Pagination

    def get_queryset(self) -> QuerySet[PlanItem]:
        return worklist_items(team_ids=staff_team_ids(user_of(self.request)))

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "lang": api_language(self.request)}

    @extend_schema(
        operation_id="worklist",
        responses={200: WorklistItemSerializer(many=True), **errors(400, 401, 403, 404, 429)},
        tags=["staff"],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Overdue, due and blocked injections of my care teams, ranked by risk (rebound first)."""
        return super().get(request, *args, **kwargs)


# --- appointments ----------------------------------------------------------------------------


APPOINTMENT_FILTERS = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="Starting on or after this date (UTC)."),
    OpenApiParameter("to", OpenApiTypes.DATE, description="Starting before this date (UTC)."),
    OpenApiParameter("patient", OpenApiTypes.UUID, description="One patient's appointments."),
    OpenApiParameter("status", OpenApiTypes.STR, enum=Appointment.Status.values),
]


def _date_param(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise CarnetError(_("Give a date as YYYY-MM-DD."), field=name) from None


def scoped_appointments(user: User) -> QuerySet[Appointment]:
    return scoped_records(Appointment, user).select_related("patient", "care_team", "plan_item", "nurse")


class AppointmentListView(ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsCareStaff]
    serializer_class = AppointmentSerializer
    pagination_class = Pagination

    def get_queryset(self) -> QuerySet[Appointment]:
        qs = scoped_appointments(user_of(self.request))
        start, end = _date_param(self.request, "from"), _date_param(self.request, "to")
        if start:
            qs = qs.filter(starts_at__date__gte=start)
        if end:
            qs = qs.filter(starts_at__date__lt=end)
        patient = self.request.query_params.get("patient")
        if patient:
            qs = qs.filter(patient__public_id=uuid_or_404(patient))
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in Appointment.Status.values:
                raise CarnetError(_("Unknown status."), field="status")
            qs = qs.filter(status=wanted)
        return qs.order_by("starts_at", "pk")

    @extend_schema(
        operation_id="appointments_list",
        parameters=APPOINTMENT_FILTERS,
        responses={200: AppointmentSerializer(many=True), **errors(400, 401, 403, 404, 429)},
        tags=["staff"],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Appointments of my care teams' patients."""
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="appointments_book",
        request=AppointmentBookSerializer,
        responses={201: AppointmentSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        """Book a plan item; outside its due window, ``out_of_window_reason`` must say why."""
        body = AppointmentBookSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        user: User = user_of(request)
        item = PlanItem.objects.filter(patient__in=scoped_patients(user), public_id=data["plan_item"]).first()
        if item is None:
            raise CarnetError(_("No such plan item among your patients."), field="plan_item")
        nurse: User | None = user
        if data.get("nurse"):
            nurse = User.objects.filter(
                public_id=data["nurse"], memberships__care_team_id=item.patient.care_team_id
            ).first()
        if nurse is None:
            raise CarnetError(_("No such nurse in this patient's care team."), field="nurse")
        appointment = appointment_services.appointment_book(
            plan_item=item,
            starts_at=data["starts_at"],
            ends_at=data.get("ends_at"),
            nurse=nurse,
            by=user,
            out_of_window_reason=data.get("out_of_window_reason", ""),
        )
        return Response(
            AppointmentSerializer(scoped_appointments(user).get(pk=appointment.pk)).data, status=status.HTTP_201_CREATED
        )


class AppointmentDetailView(APIView):
    permission_classes = [IsCareStaff]

    @extend_schema(
        operation_id="appointments_retrieve",
        parameters=[id_parameter()],
        responses={200: AppointmentSerializer, **READ_ERRORS},
        tags=["staff"],
    )
    def get(self, request: Request, id: str) -> Response:
        """One appointment."""
        appointment = get_object_or_404(scoped_appointments(user_of(request)), public_id=uuid_or_404(id))
        return Response(AppointmentSerializer(appointment).data)


class AppointmentMoveView(APIView):
    permission_classes = [IsCareStaff]

    @extend_schema(
        operation_id="appointments_move",
        parameters=[id_parameter()],
        request=AppointmentMoveSerializer,
        responses={200: AppointmentSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Move an appointment; outside the due window, say why."""
        appointment = get_object_or_404(scoped_appointments(user_of(request)), public_id=uuid_or_404(id))
        body = AppointmentMoveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        appointment_services.appointment_move(
            appointment=appointment,
            starts_at=data["starts_at"],
            ends_at=data.get("ends_at"),
            by=user_of(request),
            out_of_window_reason=data.get("out_of_window_reason", ""),
        )
        return Response(AppointmentSerializer(scoped_appointments(user_of(request)).get(pk=appointment.pk)).data)


class AppointmentCancelView(APIView):
    permission_classes = [IsCareStaff]

    @extend_schema(
        operation_id="appointments_cancel",
        parameters=[id_parameter()],
        request=AppointmentCancelSerializer,
        responses={200: AppointmentSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Cancel an appointment, with a reason."""
        appointment = get_object_or_404(scoped_appointments(user_of(request)), public_id=uuid_or_404(id))
        body = AppointmentCancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        appointment_services.appointment_cancel(
            appointment=appointment,
            by=user_of(request),
            reason=body.validated_data["reason"],
        )
        return Response(AppointmentSerializer(scoped_appointments(user_of(request)).get(pk=appointment.pk)).data)


# --- escalations ------------------------------------------------------------------------------


ESCALATION_FILTERS = [
    OpenApiParameter("open", OpenApiTypes.BOOL, description="Only unresolved (true) or resolved (false) ones."),
    OpenApiParameter("level", OpenApiTypes.STR, enum=["L1", "L2", "L3", "L4"]),
]


def scoped_escalations(user: User) -> QuerySet[Escalation]:
    return scoped_records(Escalation, user).select_related("patient", "plan_item", "acknowledged_by")


class EscalationListView(ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsCareStaff]
    serializer_class = EscalationSerializer
    pagination_class = Pagination

    def get_queryset(self) -> QuerySet[Escalation]:
        qs = scoped_escalations(user_of(self.request))
        wanted = (self.request.query_params.get("open") or "").lower()
        if wanted in ("true", "1"):
            qs = qs.filter(resolved_at__isnull=True)
        elif wanted in ("false", "0"):
            qs = qs.filter(resolved_at__isnull=False)
        elif wanted:
            raise CarnetError(_("Give true or false."), field="open")
        level = self.request.query_params.get("level")
        if level:
            if level not in ("L1", "L2", "L3", "L4"):
                raise CarnetError(_("Unknown level."), field="level")
            qs = qs.filter(level=level)
        return qs.order_by("-opened_at", "pk")

    @extend_schema(
        operation_id="escalations_list",
        parameters=ESCALATION_FILTERS,
        responses={200: EscalationSerializer(many=True), **errors(400, 401, 403, 404, 429)},
        tags=["staff"],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Escalations of my care teams' patients, newest first."""
        return super().get(request, *args, **kwargs)


class EscalationAcknowledgeView(APIView):
    permission_classes = [IsCareStaff]

    @extend_schema(
        operation_id="escalations_acknowledge",
        parameters=[id_parameter()],
        request=None,
        responses={200: EscalationSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Acknowledge an escalation level: its repeated alerts stop."""
        escalation = get_object_or_404(scoped_escalations(user_of(request)), public_id=uuid_or_404(id))
        escalation = plan_services.escalation_acknowledge(escalation=escalation, by=user_of(request))
        return Response(EscalationSerializer(scoped_escalations(user_of(request)).get(pk=escalation.pk)).data)


class EscalationResolveView(APIView):
    permission_classes = [IsCareStaff]

    @extend_schema(
        operation_id="escalations_resolve",
        parameters=[id_parameter()],
        request=EscalationResolveSerializer,
        responses={200: EscalationSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Resolve an escalation with the decision taken; its pending alerts are cancelled."""
        escalation = get_object_or_404(scoped_escalations(user_of(request)), public_id=uuid_or_404(id))
        body = EscalationResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        escalation = plan_services.escalation_resolve(
            escalation=escalation,
            by=user_of(request),
            resolution=body.validated_data["resolution"],
        )
        return Response(EscalationSerializer(scoped_escalations(user_of(request)).get(pk=escalation.pk)).data)
