"""Booklet endpoints: the patient's own (``/me``) and staff's (``/patients/…``, ``/courses/…``, …).

Views are thin: a serializer checks the input, one service writes (and re-plans), a serializer
renders the result. Every queryset is scoped to ``user_of(request)`` (a patient reaches only their
own booklet; staff reach only patients of their care teams), so an object outside that scope is
a 404 whether it exists or not. Every POST honours ``Idempotency-Key``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Model, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.api import IsCareStaff, IsPatient, Pagination, api_language, errors, id_parameter, user_of, uuid_or_404
from backend.conditional import (
    IF_NONE_MATCH,
    NOT_MODIFIED,
    BodyCache,
    PolledNegotiation,
    etag_matches,
    json_bytes_response,
    not_modified,
)
from backend.errors import CarnetError
from backend.polled import PolledGetView
from idempotency.services import idempotent
from notifications.api import DeviceSerializer, PreferencesSerializer, preferences_data, preferences_of
from notifications.api import preferences_update as notification_preferences_update
from notifications.models import Device, OutboxMessage
from patients import services
from patients.models import (
    CareTeam,
    Comedication,
    DentalEvent,
    DoseRecord,
    DoseUnit,
    LabResult,
    Language,
    Patient,
    Product,
    Protocol,
    Route,
    TreatmentCourse,
    User,
)
from patients.serializers import (
    BOOKLET_AT_AUTH,
    BookletSerializer,
    CareTeamSerializer,
    ComedicationAddSerializer,
    ComedicationSerializer,
    CourseSerializer,
    CourseStartSerializer,
    CourseStopSerializer,
    DentalEventAddSerializer,
    DentalEventSerializer,
    DoseRecordSerializer,
    DoseSerializer,
    LabAddSerializer,
    LabSerializer,
    PatientSerializer,
    PatientWriteSerializer,
    TimezoneField,
    VitaminDSelfReportSerializer,
    VoidSerializer,
    booklet_data,
    booklet_etag,
    booklet_rendered,
)
from scheduling.models import OPEN_STATUSES, Appointment, Escalation, ItemStatus, PlanItem
from scheduling.models_feeds import CalendarFeed
from scheduling.serializers import AppointmentSerializer, EscalationSerializer, PlanItemSerializer

PREFERENCE_FIELDS = ("channels", "time_of_day", "quiet_start", "quiet_end", "language")
STAFF_ERRORS = errors(400, 401, 403, 404, 409, 422, 429)
READ_ERRORS = errors(401, 403, 404, 429)

# --- scope ----------------------------------------------------------------------------------


def care_teams_of(user: User) -> QuerySet[CareTeam]:
    if user.is_superuser:
        return CareTeam.objects.all()
    return CareTeam.objects.filter(memberships__user=user)


def scoped_patients(user: User) -> QuerySet[Patient]:
    """The patients of ``user``'s care teams (one join, no extra query)."""
    if user.is_superuser:
        return Patient.objects.all()
    return Patient.objects.filter(care_team__memberships__user=user)


def staff_patient(request: Request, raw_id: str) -> Patient:
    return get_object_or_404(scoped_patients(user_of(request)), public_id=uuid_or_404(raw_id))


def scoped_records(model: type[Model], user: User) -> QuerySet[Any]:
    """Booklet rows (courses, doses, labs, …) of patients in ``user``'s care teams."""
    if user.is_superuser:
        return model._default_manager.all()
    return model._default_manager.filter(patient__care_team__memberships__user=user)


def me(request: Request) -> Patient:
    return user_of(request).patient


@contextmanager
def api_fields(mapping: dict[str, str]) -> Iterator[None]:
    """Name the request's fields in errors raised by a service in its model's field names."""
    try:
        yield
    except services.BookletValidationError as exc:
        exc.errors = {mapping.get(name, name): messages for name, messages in exc.errors.items()}
        exc.field = mapping.get(exc.field or "", exc.field)
        raise
    except CarnetError as exc:
        exc.field = mapping.get(exc.field or "", exc.field)
        raise


# --- patient: profile, booklet, self-reported vitamin D, export ------------------------------


class MeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(read_only=True)
    first_name = serializers.CharField(read_only=True)
    last_name = serializers.CharField(read_only=True)
    birth_date = serializers.DateField(read_only=True)
    care_team = serializers.CharField(read_only=True)
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True)
    language = serializers.ChoiceField(choices=Language.choices, required=False)
    timezone = TimezoneField(required=False)
    consent_email = serializers.BooleanField(required=False)
    consent_push = serializers.BooleanField(required=False)
    consent_sms = serializers.BooleanField(required=False)
    preferences = PreferencesSerializer(required=False, partial=True)


def me_data(patient: Patient) -> dict[str, Any]:
    return {
        "id": patient.public_id,
        "first_name": patient.first_name,
        "last_name": patient.last_name,
        "birth_date": patient.birth_date,
        "care_team": patient.care_team.name,
        "email": patient.email,
        "phone": patient.phone,
        "language": patient.language,
        "timezone": patient.timezone,
        "consent_email": patient.consent_email,
        "consent_push": patient.consent_push,
        "consent_sms": patient.consent_sms,
        "preferences": preferences_data(preferences_of(patient)),
    }


class MeView(APIView):
    permission_classes = [IsPatient]

    @extend_schema(operation_id="me_profile", responses={200: MeSerializer, **errors(401, 403, 429)}, tags=["me"])
    def get(self, request: Request) -> Response:
        """My profile and how I am reminded (channels, time of day, quiet hours, language)."""
        return Response(MeSerializer(me_data(me(request))).data)

    @extend_schema(
        operation_id="me_profile_update",
        request=MeSerializer,
        responses={200: MeSerializer, **errors(400, 401, 403, 429)},
        tags=["me"],
    )
    def patch(self, request: Request) -> Response:
        """Change my contact details, language, time zone, consents or reminder preferences."""
        body = MeSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        changes = dict(body.validated_data)
        preferences = changes.pop("preferences", None)
        patient = me(request)
        with transaction.atomic():
            if changes:
                patient = services.patient_update(patient=patient, by=user_of(request), **changes)
            if preferences:
                with api_fields({name: f"preferences.{name}" for name in PREFERENCE_FIELDS}):
                    notification_preferences_update(patient=patient, changes=dict(preferences))
        return Response(MeSerializer(me_data(patient)).data)


# Booklets rendered by this process, by revision: ~18 KB on average at the benchmark's million
# (a ten-year booklet ~70 KB), so ~1,800 in the default 32 MiB.
BOOKLETS = BodyCache(max_bytes=settings.CARNET_API_KEPT_BYTES)


def booklet_response(request: HttpRequest, patient: Patient) -> HttpResponse:
    """The booklet with an ETag known before rendering it (its revision): a 304 costs one query
    after auth, and a body this process rendered at the same revision is not rendered again."""
    etag = booklet_etag(patient)
    if etag is None:  # not PostgreSQL: the ETag is a hash of the body
        return json_bytes_response(request, booklet_rendered(patient)[0])
    if etag_matches(request, etag):
        return not_modified(etag)
    body = BOOKLETS.get((patient.pk, etag))
    if body is None:
        body, rendered_etag = booklet_rendered(patient)
        etag = rendered_etag or etag  # the body's own revision, should a write have come in between
        BOOKLETS.put((patient.pk, etag), body)
    return json_bytes_response(request, body, etag=etag)


class MeBookletView(PolledGetView):
    """``GET`` answered by ``backend.polled`` (the same checks, without DRF's dispatch); other methods by DRF."""

    permission_classes = [IsPatient]
    content_negotiation_class = PolledNegotiation
    at_auth = BOOKLET_AT_AUTH  # the booklet's revision read with the token's user: a 304 is one statement

    @staticmethod
    def polled(request: HttpRequest, patient: Patient) -> HttpResponse:
        return booklet_response(request, patient)

    @extend_schema(
        operation_id="me_booklet",
        parameters=[IF_NONE_MATCH],
        responses={200: BookletSerializer, 304: NOT_MODIFIED, **errors(401, 403, 429)},
        tags=["me"],
    )
    def get(self, request: Request) -> HttpResponse:
        """My booklet: courses, doses (voided ones shown as voided), labs, dental events, co-medications.

        Send the ``ETag`` back in ``If-None-Match``: 304 when nothing changed.
        """
        return booklet_response(request, me(request))


class MeVitaminDView(APIView):
    permission_classes = [IsPatient]

    @extend_schema(
        operation_id="me_vitamin_d_report",
        request=VitaminDSelfReportSerializer,
        responses={201: DoseSerializer, **errors(400, 401, 403, 422, 429)},
        tags=["me"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        """Report an oral vitamin D (cholecalciferol) dose I took."""
        body = VitaminDSelfReportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        patient = me(request)
        taken_at = body.validated_data["taken_at"]
        day = patient.local_date(taken_at) if timezone.is_aware(taken_at) else taken_at.date()
        course = (
            TreatmentCourse.objects.filter(
                patient=patient, protocol=Protocol.VITAMIN_D, voided_at__isnull=True, start_date__lte=day
            )
            .filter(Q(stop_date__isnull=True) | Q(stop_date__gte=day))
            .order_by("-start_date")
            .first()
        )
        with api_fields({"dose_value": "dose_iu", "given_at": "taken_at", "course": "taken_at"}):
            dose = services.dose_record(
                patient=patient,
                course=course,
                product=Product.CHOLECALCIFEROL,
                dose_value=body.validated_data["dose_iu"],
                dose_unit=DoseUnit.IU,
                route=Route.PO,
                given_at=taken_at,
                by=user_of(request),
                source=DoseRecord.Source.SELF_REPORTED,
            )
        return Response(DoseSerializer(dose).data, status=status.HTTP_201_CREATED)


class AccountSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(source="public_id")
    email = serializers.EmailField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    role = serializers.CharField()
    language = serializers.CharField()
    date_joined = serializers.DateTimeField()
    last_login = serializers.DateTimeField(allow_null=True)


class FeedMetaSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(source="public_id")
    precise_titles = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    rotated_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class MessageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    kind = serializers.CharField()
    channel = serializers.CharField()
    state = serializers.CharField()
    language = serializers.CharField()
    send_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)


class ChangeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    at = serializers.DateTimeField()
    change = serializers.CharField(help_text="+ created, ~ changed, - removed")
    by_me = serializers.BooleanField()


class ExportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    exported_at = serializers.DateTimeField()
    account = AccountSerializer()
    patient = PatientSerializer()
    care_team = CareTeamSerializer()
    preferences = PreferencesSerializer()
    devices = DeviceSerializer(many=True)
    booklet = BookletSerializer()
    plan = PlanItemSerializer(many=True)
    escalations = EscalationSerializer(many=True)
    appointments = AppointmentSerializer(many=True)
    calendar_feeds = FeedMetaSerializer(many=True)
    messages = MessageSerializer(many=True)
    profile_changes = ChangeSerializer(many=True)


def export_data(patient: Patient, *, user: User, lang: str) -> dict[str, Any]:
    """Everything Carnet holds about ``patient`` (GDPR art. 15), in a fixed number of queries."""
    return {
        "exported_at": timezone.now(),
        "account": AccountSerializer(user).data,
        "patient": PatientSerializer(patient).data,
        "care_team": CareTeamSerializer(patient.care_team).data,
        "preferences": PreferencesSerializer(preferences_data(preferences_of(patient))).data,
        "devices": DeviceSerializer(Device.objects.filter(patient=patient).order_by("created_at"), many=True).data,
        "booklet": booklet_data(patient),
        "plan": PlanItemSerializer(
            patient.plan_items.select_related("course").order_by("due", "pk"),  # their days late: this patient's date
            many=True,
            context={"lang": lang},
        ).data,
        "escalations": EscalationSerializer(
            Escalation.objects.filter(patient=patient).select_related("patient", "plan_item", "acknowledged_by"),
            many=True,
        ).data,
        "appointments": AppointmentSerializer(
            Appointment.objects.filter(patient=patient).select_related("patient", "care_team", "plan_item", "nurse"),
            many=True,
        ).data,
        "calendar_feeds": FeedMetaSerializer(CalendarFeed.objects.filter(patient=patient), many=True).data,
        "messages": MessageSerializer(
            OutboxMessage.objects.filter(patient=patient, recipient_user__isnull=True).order_by("send_at"), many=True
        ).data,
        "profile_changes": [
            {"at": h.history_date, "change": h.history_type, "by_me": h.history_user_id == user.pk}
            for h in Patient.history.filter(id=patient.pk).order_by("history_date")
        ],
    }


class MeExportView(APIView):
    permission_classes = [IsPatient]

    @extend_schema(operation_id="me_export", responses={200: ExportSerializer, **errors(401, 403, 429)}, tags=["me"])
    def get(self, request: Request) -> Response:
        """Everything held about me, as JSON (GDPR right of access)."""
        patient = me(request)
        response = Response(export_data(patient, user=user_of(request), lang=api_language(request, patient.language)))
        response["Content-Disposition"] = 'attachment; filename="carnet-export.json"'
        response["Cache-Control"] = "no-store"
        return response


# --- staff: care teams and patients ----------------------------------------------------------


class CareTeamListView(ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsCareStaff]
    serializer_class = CareTeamSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[CareTeam]:
        return care_teams_of(user_of(self.request)).order_by("name")

    @extend_schema(
        operation_id="care_teams_list", responses={200: CareTeamSerializer(many=True), **READ_ERRORS}, tags=["staff"]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """My care teams."""
        return super().get(request, *args, **kwargs)


def patients_annotated(qs: QuerySet[Patient]) -> QuerySet[Patient]:
    open_items = PlanItem.objects.filter(patient=OuterRef("pk"), closed_at__isnull=True, status__in=OPEN_STATUSES)
    return qs.select_related("care_team").annotate(
        overdue=Exists(open_items.filter(status__startswith="overdue")),
        blocked=Exists(open_items.filter(Q(status=ItemStatus.BLOCKED) | ~Q(blocked_by=[]))),
    )


PATIENT_FILTERS = [
    OpenApiParameter("search", OpenApiTypes.STR, description="Name or email contains; or a birth date (YYYY-MM-DD)."),
    OpenApiParameter("protocol", OpenApiTypes.STR, enum=Protocol.values, description="Has an active course of it."),
    OpenApiParameter("overdue", OpenApiTypes.BOOL, description="Has an overdue item."),
    OpenApiParameter("blocked", OpenApiTypes.BOOL, description="Has a blocked item."),
]


def _flag(raw: str | None, name: str) -> bool | None:
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise CarnetError(_("Give true or false."), field=name)


class PatientListView(ListAPIView):  # type: ignore[type-arg]
    permission_classes = [IsCareStaff]
    serializer_class = PatientSerializer
    pagination_class = Pagination

    def get_queryset(self) -> QuerySet[Patient]:
        params = self.request.query_params
        qs = patients_annotated(scoped_patients(user_of(self.request)))
        search = (params.get("search") or "").strip()
        if search:
            try:
                qs = qs.filter(birth_date=date.fromisoformat(search))
            except ValueError:
                qs = qs.filter(
                    Q(last_name__icontains=search) | Q(first_name__icontains=search) | Q(email__icontains=search)
                )
        protocol = params.get("protocol")
        if protocol:
            if protocol not in Protocol.values:
                raise CarnetError(_("Unknown protocol."), field="protocol")
            qs = qs.filter(
                Exists(
                    TreatmentCourse.objects.filter(
                        patient=OuterRef("pk"), protocol=protocol, voided_at__isnull=True, stop_date__isnull=True
                    )
                )
            )
        for name in ("overdue", "blocked"):
            wanted = _flag(params.get(name), name)
            if wanted is not None:
                qs = qs.filter(**{name: wanted})
        return qs.order_by("last_name", "first_name", "pk")

    @extend_schema(
        operation_id="patients_list",
        parameters=PATIENT_FILTERS,
        responses={200: PatientSerializer(many=True), **errors(400, 401, 403, 404, 429)},
        tags=["staff"],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Patients of my care teams, with search and filters."""
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="patients_create",
        request=PatientWriteSerializer,
        responses={201: PatientSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        """Add a patient to one of my care teams."""
        body = PatientWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        team_id = fields.pop("care_team", None)
        teams = care_teams_of(user_of(request))
        team = teams.filter(public_id=team_id).first() if team_id else None
        if team is None:
            mine = list(teams[:2])
            if team_id is not None or len(mine) != 1:
                raise CarnetError(_("Choose one of your care teams."), field="care_team")
            team = mine[0]
        patient = services.patient_create(care_team=team, by=user_of(request), **fields)
        return Response(
            PatientSerializer(patients_annotated(Patient.objects.filter(pk=patient.pk)).get()).data,
            status=status.HTTP_201_CREATED,
        )


class PatientDetailView(APIView):
    permission_classes = [IsCareStaff]

    @extend_schema(
        operation_id="patients_retrieve",
        parameters=[id_parameter()],
        responses={200: PatientSerializer, **READ_ERRORS},
        tags=["staff"],
    )
    def get(self, request: Request, id: str) -> Response:
        """One patient of my care teams."""
        patient = get_object_or_404(patients_annotated(scoped_patients(user_of(request))), public_id=uuid_or_404(id))
        return Response(PatientSerializer(patient).data)

    @extend_schema(
        operation_id="patients_update",
        parameters=[id_parameter()],
        request=PatientWriteSerializer,
        responses={200: PatientSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    def patch(self, request: Request, id: str) -> Response:
        """Change a patient's details; facts the rules read re-plan at once."""
        patient = staff_patient(request, id)
        body = PatientWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        if "care_team" in fields:
            raise CarnetError(_("A patient's care team is not changed here."), field="care_team")
        services.patient_update(patient=patient, by=user_of(request), **fields)
        return Response(PatientSerializer(patients_annotated(Patient.objects.filter(pk=patient.pk)).get()).data)


class PatientBookletView(APIView):
    permission_classes = [IsCareStaff]
    content_negotiation_class = PolledNegotiation

    @extend_schema(
        operation_id="patients_booklet",
        parameters=[id_parameter(), IF_NONE_MATCH],
        responses={200: BookletSerializer, 304: NOT_MODIFIED, **READ_ERRORS},
        tags=["staff"],
    )
    def get(self, request: Request, id: str) -> HttpResponse:
        """A patient's booklet, voided entries included."""
        return booklet_response(request, staff_patient(request, id))


# --- staff: courses, doses, labs, dental events, co-medications ----------------------------------


class _PatientRecordsView(APIView):
    """List one kind of booklet row of a patient, or add one through its service."""

    permission_classes = [IsCareStaff]
    model: type[Model]
    serializer_class: Any
    related: tuple[str, ...] = ("patient",)

    def rows(self, patient: Patient) -> QuerySet[Any]:
        return self.model._default_manager.filter(patient=patient).select_related(*self.related)


class PatientCoursesView(_PatientRecordsView):
    model = TreatmentCourse
    serializer_class = CourseSerializer

    @extend_schema(
        operation_id="courses_list",
        parameters=[id_parameter()],
        responses={200: CourseSerializer(many=True), **READ_ERRORS},
        tags=["staff"],
    )
    def get(self, request: Request, id: str) -> Response:
        """A patient's treatment courses."""
        return Response(CourseSerializer(self.rows(staff_patient(request, id)), many=True).data)

    @extend_schema(
        operation_id="courses_start",
        parameters=[id_parameter()],
        request=CourseStartSerializer,
        responses={201: CourseSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Start a treatment course; the plan is rewritten in the same transaction."""
        patient = staff_patient(request, id)
        body = CourseStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        course = services.course_start(patient=patient, by=user_of(request), **body.validated_data)
        return Response(CourseSerializer(course).data, status=status.HTTP_201_CREATED)


class CourseStoppedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    course = CourseSerializer()
    consolidation = PlanItemSerializer(many=True, help_text="The consolidation now scheduled (OP-08, CONS-01…05).")


class CourseStopView(APIView):
    permission_classes = [IsCareStaff]

    @extend_schema(
        operation_id="courses_stop",
        parameters=[id_parameter()],
        request=CourseStopSerializer,
        responses={200: CourseStoppedSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Stop a course with a reason; stopping denosumab schedules the consolidation."""
        course = get_object_or_404(scoped_records(TreatmentCourse, user_of(request)), public_id=uuid_or_404(id))
        body = CourseStopSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        with api_fields({"stop_reason": "reason"}):
            course = services.course_stop(
                course=course,
                stop_date=data["stop_date"],
                reason=data["reason"],
                consolidation=data.get("consolidation", ""),
                by=user_of(request),
            )
        consolidation = (
            PlanItem.objects.filter(
                patient_id=course.patient_id,
                kind__in=("consolidation", "reevaluation"),
                closed_at__isnull=True,
                status__in=OPEN_STATUSES,
            )
            .select_related("course")
            .order_by("due")
        )
        return Response(
            {
                "course": CourseSerializer(course).data,
                "consolidation": PlanItemSerializer(
                    consolidation, many=True, context={"lang": api_language(request)}
                ).data,
            }
        )


def _void_view(model: Any, service: Any, arg: str, out: Any, operation_id: str, summary: str) -> type[APIView]:
    class VoidView(APIView):
        permission_classes = [IsCareStaff]

        @extend_schema(
            operation_id=operation_id,
            parameters=[id_parameter()],
            request=VoidSerializer,
            responses={200: out, **STAFF_ERRORS},
            tags=["staff"],
            summary=summary,
        )
        @idempotent
        def post(self, request: Request, id: str) -> Response:
            row = get_object_or_404(scoped_records(model, user_of(request)), public_id=uuid_or_404(id))
            body = VoidSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            voided = service(**{arg: row}, reason=body.validated_data["reason"], by=user_of(request))
            return Response(out(voided).data)

    VoidView.__name__ = VoidView.__qualname__ = f"{model.__name__}VoidView"
    return VoidView


CourseVoidView = _void_view(
    TreatmentCourse,
    services.course_void,
    "course",
    CourseSerializer,
    "courses_void",
    "Void a course entered by mistake (its doses first), with a reason.",
)
DoseVoidView = _void_view(
    DoseRecord,
    services.dose_void,
    "dose",
    DoseSerializer,
    "doses_void",
    "Void a dose entered by mistake, with a reason; the plan is rewritten.",
)
LabVoidView = _void_view(
    LabResult,
    services.lab_void,
    "lab",
    LabSerializer,
    "labs_void",
    "Void a lab result entered by mistake, with a reason.",
)
DentalEventVoidView = _void_view(
    DentalEvent,
    services.dental_event_void,
    "dental",
    DentalEventSerializer,
    "dental_events_void",
    "Void a dental event entered by mistake, with a reason.",
)
ComedicationVoidView = _void_view(
    Comedication,
    services.comedication_void,
    "comedication",
    ComedicationSerializer,
    "comedications_void",
    "Void a co-medication entered by mistake, with a reason.",
)


class PatientDosesView(_PatientRecordsView):
    model = DoseRecord
    related = ("patient", "course")

    @extend_schema(
        operation_id="doses_list",
        parameters=[id_parameter()],
        responses={200: DoseSerializer(many=True), **READ_ERRORS},
        tags=["staff"],
    )
    def get(self, request: Request, id: str) -> Response:
        """A patient's doses, voided ones included."""
        return Response(DoseSerializer(self.rows(staff_patient(request, id)), many=True).data)

    @extend_schema(
        operation_id="doses_record",
        parameters=[id_parameter()],
        request=DoseRecordSerializer,
        responses={201: DoseSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Record a dose with its lot and site; a blocked dose needs an override with a reason."""
        patient = staff_patient(request, id)
        body = DoseRecordSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        course_id = data.pop("course", None)
        course = None
        if course_id is not None:
            course = TreatmentCourse.objects.filter(patient=patient, public_id=course_id).first()
            if course is None:
                raise CarnetError(_("This patient has no such course."), field="course")
        # The one model-level constraint of a dose is "one per product and day" (given_at).
        with api_fields({"given_on": "given_at", "non_field_errors": "given_at"}):
            dose = services.dose_record(
                patient=patient,
                course=course,
                by=user_of(request),
                given_by=user_of(request),
                **data,
            )
        return Response(DoseSerializer(dose).data, status=status.HTTP_201_CREATED)


class PatientLabsView(_PatientRecordsView):
    model = LabResult

    @extend_schema(
        operation_id="labs_list",
        parameters=[id_parameter()],
        responses={200: LabSerializer(many=True), **READ_ERRORS},
        tags=["staff"],
    )
    def get(self, request: Request, id: str) -> Response:
        """A patient's lab results, voided ones included."""
        return Response(LabSerializer(self.rows(staff_patient(request, id)), many=True).data)

    @extend_schema(
        operation_id="labs_add",
        parameters=[id_parameter()],
        request=LabAddSerializer,
        responses={201: LabSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Add a lab result in any unit that fits the test; it is stored normalised."""
        patient = staff_patient(request, id)
        body = LabAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with api_fields({"value_entered": "value", "unit_entered": "unit", "drawn_on": "drawn_at"}):
            lab = services.lab_add(patient=patient, by=user_of(request), **body.validated_data)
        return Response(LabSerializer(lab).data, status=status.HTTP_201_CREATED)


class PatientDentalEventsView(_PatientRecordsView):
    model = DentalEvent

    @extend_schema(
        operation_id="dental_events_list",
        parameters=[id_parameter()],
        responses={200: DentalEventSerializer(many=True), **READ_ERRORS},
        tags=["staff"],
    )
    def get(self, request: Request, id: str) -> Response:
        """A patient's dental events, voided ones included."""
        return Response(DentalEventSerializer(self.rows(staff_patient(request, id)), many=True).data)

    @extend_schema(
        operation_id="dental_events_add",
        parameters=[id_parameter()],
        request=DentalEventAddSerializer,
        responses={201: DentalEventSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Add a dental event (exam, X-ray, extraction, clearance, ONJ finding)."""
        patient = staff_patient(request, id)
        body = DentalEventAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        event = services.dental_event_add(patient=patient, by=user_of(request), on=data.pop("date"), **data)
        return Response(DentalEventSerializer(event).data, status=status.HTTP_201_CREATED)


class PatientComedicationsView(_PatientRecordsView):
    model = Comedication

    @extend_schema(
        operation_id="comedications_list",
        parameters=[id_parameter()],
        responses={200: ComedicationSerializer(many=True), **READ_ERRORS},
        tags=["staff"],
    )
    def get(self, request: Request, id: str) -> Response:
        """A patient's co-medications."""
        return Response(ComedicationSerializer(self.rows(staff_patient(request, id)), many=True).data)

    @extend_schema(
        operation_id="comedications_add",
        parameters=[id_parameter()],
        request=ComedicationAddSerializer,
        responses={201: ComedicationSerializer, **STAFF_ERRORS},
        tags=["staff"],
    )
    @idempotent
    def post(self, request: Request, id: str) -> Response:
        """Add a co-medication the rules read (glucocorticoids, antiangiogenics, biologics)."""
        patient = staff_patient(request, id)
        body = ComedicationAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        comed = services.comedication_add(patient=patient, by=user_of(request), **body.validated_data)
        return Response(ComedicationSerializer(comed).data, status=status.HTTP_201_CREATED)
