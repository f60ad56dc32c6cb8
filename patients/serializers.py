"""API shapes of the booklet: what the app and staff tools read, and what they may send.

Output serializers are read-only views of the rows (UUIDs, never sequential ids). Input
serializers only check types and choices; the services validate the facts and write them.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, models
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from rest_framework import ISO_8601, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings

from backend.api import ReadModelSerializer
from backend.auth_query import AtAuth, read_at_auth
from backend.conditional import instant_json_sql, json_object_sql, json_value_sql, session_zone_sql
from backend.prepared import Prepared
from patients.models import (
    CareTeam,
    Comedication,
    DentalEvent,
    DoseRecord,
    DoseUnit,
    InjectionSite,
    LabResult,
    Language,
    Patient,
    Predisposition,
    Product,
    Protocol,
    RiskFactor,
    Route,
    Sex,
    TreatmentCourse,
    validate_timezone,
)
from patients.units import LAB_TESTS, UnitError, normalise

# --- helpers --------------------------------------------------------------------------------


def uuid_of(source: str) -> serializers.UUIDField:
    """A related row named by its public UUID (the relation must be select_related)."""
    return serializers.UUIDField(source=f"{source}.public_id", read_only=True, allow_null=True, default=None)


class VoidFieldsMixin(serializers.Serializer):  # type: ignore[type-arg]
    voided = serializers.SerializerMethodField()
    voided_at = serializers.DateTimeField(read_only=True, allow_null=True)
    void_reason = serializers.CharField(read_only=True)
    recorded_at = serializers.DateTimeField(read_only=True)

    def get_voided(self, obj: Any) -> bool:
        return obj.voided_at is not None


# Clinical facts before this are not plausible, and would make the planner walk centuries of
# monthly items (a fuzzed course "started" in the year 334 did exactly that).
EARLIEST_FACT = date(1980, 1, 1)
LATEST_START = timedelta(days=366)


class FactDateField(serializers.DateField):
    """A date of a clinical fact: from 1980 to one year ahead (the model refuses future facts)."""

    default_error_messages = {
        "too_early": _lazy("A date before 1980 is not plausible here."),
        "too_late": _lazy("A date more than a year ahead is not plausible here."),
    }

    def to_internal_value(self, value: Any) -> date:
        day = super().to_internal_value(value)
        if day < EARLIEST_FACT:
            self.fail("too_early")
        if day > timezone.localdate() + LATEST_START:
            self.fail("too_late")
        return day


class AwareDateTimeField(serializers.DateTimeField):
    """An instant with its UTC offset: a wall-clock time without one is ambiguous across time zones."""

    default_error_messages = {
        **FactDateField.default_error_messages,
        "naive": _lazy("Give the time with its UTC offset (e.g. 2026-06-01T09:30:00+02:00)."),
    }

    def enforce_timezone(self, value: datetime) -> datetime:
        if timezone.is_naive(value):
            self.fail("naive")
        aware = super().enforce_timezone(value)
        if aware.date() < EARLIEST_FACT:
            self.fail("too_early")
        if aware.date() > timezone.localdate() + LATEST_START:
            self.fail("too_late")
        return aware


class TimezoneField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=64, validators=[validate_timezone], **kwargs)


# --- care teams and patients ------------------------------------------------------------------


class CareTeamSerializer(ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = CareTeam
        fields = ("id", "name", "kind", "timezone")
        read_only_fields = fields


class PatientSerializer(ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    care_team = uuid_of("care_team")
    email = serializers.CharField(read_only=True, help_text="Email address, or empty.")
    has_account = serializers.SerializerMethodField()
    overdue = serializers.BooleanField(read_only=True, default=False, help_text="An open item is overdue.")
    blocked = serializers.BooleanField(read_only=True, default=False, help_text="An open item is blocked.")

    class Meta:
        model = Patient
        fields = (
            "id",
            "care_team",
            "first_name",
            "last_name",
            "birth_date",
            "sex",
            "language",
            "timezone",
            "email",
            "phone",
            "consent_email",
            "consent_push",
            "consent_sms",
            "weight_kg",
            "dialysis",
            "risk_factors",
            "predispositions",
            "has_account",
            "overdue",
            "blocked",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def get_has_account(self, patient: Patient) -> bool:
        return patient.user_id is not None


class PatientWriteSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The fields staff may set on a patient (``care_team`` on creation only)."""

    care_team = serializers.UUIDField(required=False, help_text="One of your care teams (creation only).")
    first_name = serializers.CharField(max_length=150)
    last_name = serializers.CharField(max_length=150)
    birth_date = serializers.DateField()
    sex = serializers.ChoiceField(choices=Sex.choices)
    language = serializers.ChoiceField(choices=Language.choices, required=False)
    timezone = TimezoneField(required=False)
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True)
    consent_email = serializers.BooleanField(required=False)
    consent_push = serializers.BooleanField(required=False)
    consent_sms = serializers.BooleanField(required=False)
    weight_kg = serializers.DecimalField(
        max_digits=5,
        decimal_places=1,
        required=False,
        allow_null=True,
        min_value=Decimal("0"),
        max_value=Decimal("1000"),
    )
    dialysis = serializers.BooleanField(required=False)
    risk_factors = serializers.ListField(
        child=serializers.ChoiceField(choices=RiskFactor.choices), required=False, max_length=10
    )
    predispositions = serializers.ListField(
        child=serializers.ChoiceField(choices=Predisposition.choices), required=False, max_length=10
    )


# --- courses --------------------------------------------------------------------------------


class CourseSerializer(VoidFieldsMixin, ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    patient = uuid_of("patient")
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = TreatmentCourse
        fields = (
            "id",
            "patient",
            "protocol",
            "indication",
            "start_date",
            "planned_duration_months",
            "stop_date",
            "stop_reason",
            "consolidation",
            "response",
            "active",
            "voided",
            "voided_at",
            "void_reason",
            "recorded_at",
        )
        read_only_fields = fields


class CourseStartSerializer(serializers.Serializer):  # type: ignore[type-arg]
    protocol = serializers.ChoiceField(choices=Protocol.choices)
    start_date = FactDateField()
    planned_duration_months = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=240)
    response = serializers.ChoiceField(choices=TreatmentCourse.Response.choices, required=False, allow_blank=True)


class CourseStopSerializer(serializers.Serializer):  # type: ignore[type-arg]
    stop_date = FactDateField()
    reason = serializers.CharField(max_length=2000)
    consolidation = serializers.ChoiceField(
        choices=[
            (Protocol.ZOLEDRONIC_OP.value, Protocol.ZOLEDRONIC_OP.label),
            (Protocol.ALENDRONATE_OP.value, Protocol.ALENDRONATE_OP.label),
        ],
        required=False,
        allow_blank=True,
        help_text="Denosumab 60 mg only; zoledronic acid 5 mg when left out (CONS-01).",
    )


class VoidSerializer(serializers.Serializer):  # type: ignore[type-arg]
    reason = serializers.CharField(max_length=2000)


# --- doses ----------------------------------------------------------------------------------


class DoseSerializer(VoidFieldsMixin, ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    patient = uuid_of("patient")
    course = uuid_of("course")

    class Meta:
        model = DoseRecord
        fields = (
            "id",
            "patient",
            "course",
            "product",
            "dose_value",
            "dose_unit",
            "route",
            "given_at",
            "given_on",
            "injection_site",
            "lot_number",
            "source",
            "override_reason",
            "override_flags",
            "voided",
            "voided_at",
            "void_reason",
            "recorded_at",
        )
        read_only_fields = fields


class DoseRecordSerializer(serializers.Serializer):  # type: ignore[type-arg]
    course = serializers.UUIDField(required=False, allow_null=True, help_text="The patient's treatment course.")
    product = serializers.ChoiceField(choices=Product.choices)
    dose_value = serializers.DecimalField(
        max_digits=8, decimal_places=1, min_value=Decimal("0"), max_value=Decimal("1000000")
    )
    dose_unit = serializers.ChoiceField(choices=DoseUnit.choices)
    route = serializers.ChoiceField(choices=Route.choices)
    given_at = AwareDateTimeField(help_text="An instant with its offset; the local date anchors the plan.")
    injection_site = serializers.ChoiceField(choices=InjectionSite.choices, required=False, allow_blank=True)
    lot_number = serializers.CharField(max_length=40, required=False, allow_blank=True)
    source = serializers.ChoiceField(  # type: ignore[assignment]  # the API field is named like Field.source
        choices=[
            (DoseRecord.Source.STAFF.value, DoseRecord.Source.STAFF.label),
            (DoseRecord.Source.HISTORY.value, DoseRecord.Source.HISTORY.label),
        ],
        required=False,
        default=DoseRecord.Source.STAFF,
    )
    override_reason = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="Emergency override of a blocking flag, with its reason.",
    )


class VitaminDSelfReportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    dose_iu = serializers.IntegerField(min_value=1, max_value=1_000_000, help_text="Cholecalciferol, in IU.")
    taken_at = AwareDateTimeField(help_text="When the dose was taken, with its offset.")


# --- labs, dental events, co-medications ----------------------------------------------------


class LabSerializer(VoidFieldsMixin, ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    patient = uuid_of("patient")
    value = serializers.DecimalField(source="value_entered", max_digits=10, decimal_places=3, read_only=True)
    unit = serializers.CharField(source="unit_entered", read_only=True)
    value_normalised = serializers.DecimalField(source="value", max_digits=10, decimal_places=3, read_only=True)
    unit_normalised = serializers.CharField(source="unit", read_only=True)

    class Meta:
        model = LabResult
        fields = (
            "id",
            "patient",
            "test",
            "value",
            "unit",
            "value_normalised",
            "unit_normalised",
            "albumin_g_l",
            "corrected_calcium_mmol_l",
            "reference_low",
            "reference_high",
            "drawn_at",
            "drawn_on",
            "voided",
            "voided_at",
            "void_reason",
            "recorded_at",
        )
        read_only_fields = fields


def _decimal(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=10, decimal_places=3, min_value=Decimal("-1000000"), max_value=Decimal("1000000"), **kwargs
    )


class LabAddSerializer(serializers.Serializer):  # type: ignore[type-arg]
    test = serializers.ChoiceField(choices=LabResult.Test.choices)
    value = _decimal()
    unit = serializers.CharField(max_length=20, help_text="A unit that fits the test (e.g. mmol/L or mg/L).")
    drawn_at = AwareDateTimeField()
    albumin_g_l = serializers.DecimalField(
        max_digits=5,
        decimal_places=1,
        required=False,
        allow_null=True,
        min_value=Decimal("0"),
        max_value=Decimal("1000"),
    )
    reference_low = _decimal(required=False, allow_null=True)
    reference_high = _decimal(required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The unit must fit the test, and the value be plausible (messages in the reader's language)."""
        spec = LAB_TESTS[attrs["test"]]
        if attrs["unit"] not in spec.factors:
            raise serializers.ValidationError(
                {
                    "unit": _("Unit %(unit)s does not fit %(test)s; use one of: %(accepted)s.")
                    % {"unit": attrs["unit"], "test": spec.label, "accepted": ", ".join(spec.factors)}
                }
            )
        try:
            normalise(attrs["test"], attrs["value"], attrs["unit"])
        except UnitError as exc:
            low, high = spec.plausible
            raise serializers.ValidationError(
                {
                    "value": _(
                        "%(test)s %(value)s %(unit)s is outside the plausible "
                        "range %(low)s–%(high)s %(stored)s; check the value "
                        "and its unit."
                    )
                    % {
                        "test": spec.label,
                        "value": attrs["value"],
                        "unit": attrs["unit"],
                        "low": low,
                        "high": high,
                        "stored": spec.unit,
                    }
                }
            ) from exc
        return attrs


class DentalEventSerializer(VoidFieldsMixin, ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    patient = uuid_of("patient")

    class Meta:
        model = DentalEvent
        fields = (
            "id",
            "patient",
            "event",
            "date",
            "dentist",
            "notes",
            "voided",
            "voided_at",
            "void_reason",
            "recorded_at",
        )
        read_only_fields = fields


class DentalEventAddSerializer(serializers.Serializer):  # type: ignore[type-arg]
    event = serializers.ChoiceField(choices=DentalEvent.Event.choices)
    date = FactDateField()
    dentist = serializers.CharField(max_length=200, required=False, allow_blank=True)
    notes = serializers.CharField(max_length=5000, required=False, allow_blank=True)


class ComedicationSerializer(VoidFieldsMixin, ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    patient = uuid_of("patient")

    class Meta:
        model = Comedication
        fields = (
            "id",
            "patient",
            "name",
            "drug_class",
            "mg_per_day",
            "start_date",
            "stop_date",
            "voided",
            "voided_at",
            "void_reason",
            "recorded_at",
        )
        read_only_fields = fields


class ComedicationAddSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120)
    drug_class = serializers.ChoiceField(choices=Comedication.DrugClass.choices)
    mg_per_day = serializers.DecimalField(
        max_digits=7,
        decimal_places=2,
        required=False,
        allow_null=True,
        min_value=Decimal("0"),
        max_value=Decimal("100000"),
    )
    start_date = FactDateField()
    stop_date = FactDateField(required=False, allow_null=True)


class BookletSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Everything in the booklet; voided entries are listed with ``voided: true`` and their reason."""

    courses = CourseSerializer(many=True)
    doses = DoseSerializer(many=True)
    labs = LabSerializer(many=True)
    dental_events = DentalEventSerializer(many=True)
    comedications = ComedicationSerializer(many=True)


class RowRenderer:
    """Render ``values()`` rows exactly as a read-only ``ModelSerializer`` renders its instances.

    The serializer's own fields do the formatting (dates, instants in the current time zone,
    decimals at their scale), but a row is a dict read in one query: no model instance, no
    per-object ``get_attribute``, no ``ReturnDict``, so the booklet of a ten-year patient renders
    several times faster. Text, choice, integer, boolean and JSON columns come from the database
    in their API form and are copied as they are. ``computed`` are the fields that are not
    columns (``voided``, ``active``), from the row; ``given`` are fields the caller passes to
    ``render`` (the patient's id, the same on every row of a booklet).
    """

    _AS_IS = (serializers.CharField, serializers.IntegerField, serializers.BooleanField, serializers.JSONField)

    def __init__(
        self,
        serializer_class: type[serializers.Serializer],  # type: ignore[type-arg]
        *,
        computed: dict[str, Any] | None = None,
        given: tuple[str, ...] = (),
    ) -> None:
        computed = computed or {}
        self.columns: list[str] = []
        self.fields: list[tuple[str, str | None, Any]] = []
        for name, field in serializer_class().fields.items():
            if name in given:
                self.fields.append((name, None, None))
                continue
            if name in computed:
                self.fields.append((name, None, computed[name]))
                continue
            column = "__".join(str(field.source).split("."))
            self.columns.append(column)
            self.fields.append((name, column, self._converter(field)))

    @classmethod
    def _converter(cls, field: serializers.Field) -> Any:  # type: ignore[type-arg]
        """What ``field.to_representation`` does to a non-null column value, without its overhead."""
        if isinstance(field, serializers.UUIDField):
            return str
        if isinstance(field, cls._AS_IS):
            return None
        if isinstance(field, serializers.DateTimeField):
            if getattr(field, "format", api_settings.DATETIME_FORMAT) != ISO_8601:
                return field.to_representation
            return _INSTANT  # in the request's time zone: see render()
        if isinstance(field, serializers.DateField):
            if getattr(field, "format", api_settings.DATE_FORMAT) != ISO_8601:
                return field.to_representation
            return date.isoformat
        coerce = getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING)
        if isinstance(field, serializers.DecimalField) and coerce and not field.localize:
            if field.decimal_places is None or field.normalize_output:
                return field.to_representation
            step = Decimal(1).scaleb(-field.decimal_places)  # the column's scale: quantize changes nothing
            return lambda value: format(value.quantize(step), "f")
        return field.to_representation

    def render(self, rows: Any, **given: Any) -> list[dict[str, Any]]:
        zone = timezone.get_current_timezone()  # DRF's DateTimeField renders instants in it

        def instant(value: datetime) -> str:
            text = value.astimezone(zone).isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text

        fields = [(name, column, instant if convert is _INSTANT else convert) for name, column, convert in self.fields]
        out = []
        for row in rows:
            item: dict[str, Any] = {}
            for name, column, convert in fields:
                if column is None:
                    item[name] = given[name] if convert is None else convert(row)
                    continue
                value = row[column]
                item[name] = value if value is None or convert is None else convert(value)
            out.append(item)
        return out


_INSTANT = object()  # marks an ISO 8601 DateTimeField: converted in render(), in the current time zone


def _voided(row: dict[str, Any]) -> bool:
    return row["voided_at"] is not None


def _course_active(row: dict[str, Any]) -> bool:  # TreatmentCourse.is_active
    return row["stop_date"] is None and row["voided_at"] is None


_VOID = {"voided": _voided}
_BOOKLET: dict[str, tuple[Any, RowRenderer]] = {  # model, renderer
    "courses": (
        TreatmentCourse,
        RowRenderer(CourseSerializer, computed={**_VOID, "active": _course_active}, given=("patient",)),
    ),
    "doses": (DoseRecord, RowRenderer(DoseSerializer, computed=_VOID, given=("patient",))),
    "labs": (LabResult, RowRenderer(LabSerializer, computed=_VOID, given=("patient",))),
    "dental_events": (DentalEvent, RowRenderer(DentalEventSerializer, computed=_VOID, given=("patient",))),
    "comedications": (Comedication, RowRenderer(ComedicationSerializer, computed=_VOID, given=("patient",))),
}


def booklet_data(patient: Patient) -> dict[str, Any]:
    """The booklet of ``patient`` in five indexed queries, voided entries included (any database).

    Each list is in the model's order (newest first), ties broken by id, so the same booklet
    always renders the same bytes.
    """
    out: dict[str, Any] = {}
    patient_id = str(patient.public_id)
    for name, (model, renderer) in _BOOKLET.items():
        rows = (
            model._default_manager.filter(patient_id=patient.pk)
            .order_by(*model._meta.ordering, "-pk")
            .values(*renderer.columns)
        )
        out[name] = renderer.render(rows, patient=patient_id)
    return out


# --- the booklet rendered by PostgreSQL -------------------------------------------------------
#
# A ten-year booklet is a few hundred rows: rendering them in Python costs several milliseconds
# per request, most of a worker's time. On PostgreSQL one statement builds the whole JSON
# document, field for field as the serializers render it (the SQL is generated from their
# fields; tests/api/test_plan_booklet_reads.py compares both), and Python only passes the bytes
# on. Instants are written as Python's isoformat in the current time zone, as DRF renders them
# (``backend.conditional.instant_json_sql``, in the session time zone the statement sets).
# The text is compact, the very bytes DRF's renderer writes (``backend.conditional.json_object_sql``).


_COMPUTED_SQL = {  # name: (SQL, kind of JSON value: backend.conditional.json_value_sql)
    "voided": ("t.voided_at IS NOT NULL", "bool"),
    "active": ("t.stop_date IS NULL AND t.voided_at IS NULL", "bool"),  # TreatmentCourse.is_active
    "patient": ("p.public_id", "uuid"),
}


def _json_kind(field: serializers.Field, column: Any) -> tuple[str, tuple[str, ...]]:  # type: ignore[type-arg]
    """How PostgreSQL writes this field's value as JSON (``json_value_sql``), and the values it
    writes between quotes without ``to_json`` (a text column's choices): skip ``to_json`` where
    nothing needs escaping; anything else (free text, dates, JSON) through ``to_json``."""
    if isinstance(field, serializers.UUIDField):
        return "uuid", ()
    if isinstance(field, serializers.BooleanField):
        return "bool", ()
    if isinstance(field, serializers.IntegerField):
        return "int", ()
    if isinstance(column, (models.CharField, models.TextField)):  # a text column of the row itself
        choices = field.choices if isinstance(field, serializers.ChoiceField) else {}
        return "text", tuple(str(key) for key in choices)
    return "any", ()


def _list_sql(model: Any, serializer_class: type[serializers.Serializer]) -> str:  # type: ignore[type-arg]
    # Table and column names come from the models' metadata, never from input.
    pairs: list[tuple[str, str]] = []
    joins: list[str] = []
    for name, field in serializer_class().fields.items():
        if name in _COMPUTED_SQL:
            value, kind = _COMPUTED_SQL[name]
        else:
            path = str(field.source).split(".")
            relation = model._meta.get_field(path[0])
            if len(path) == 2:  # a related row's public id
                alias = f"r{len(joins)}"
                related = relation.related_model._meta
                if any(f.name == "patient" for f in related.concrete_fields):
                    # A dose's course: the patient's own few, hashed once, not one index probe per
                    # row (~7 % of the ten-year booklet's statement); a row of another patient's,
                    # which nothing forbids, still found by its id.
                    owner = related.get_field("patient").column  # a ForeignKey
                    scoped = f"(SELECT id, {path[1]} FROM {related.db_table} WHERE {owner} = p.id)"  # noqa: S608
                    joins.append(f" LEFT JOIN {scoped} {alias} ON {alias}.id = t.{relation.column}")
                    by_id = f"SELECT x.{path[1]} FROM {related.db_table} x WHERE x.id = t.{relation.column}"  # noqa: S608
                    value = f"COALESCE({alias}.{path[1]}, ({by_id}))"
                else:
                    joins.append(f" LEFT JOIN {related.db_table} {alias} ON {alias}.id = t.{relation.column}")
                    value = f"{alias}.{path[1]}"
            else:
                value = f"t.{relation.column}"
            kind, plain = _json_kind(field, relation if len(path) == 1 else None)
            if isinstance(field, serializers.DateTimeField):  # in the zone the statement set (_PATIENT_SQL)
                value, kind = instant_json_sql(value), "json"
            elif isinstance(field, serializers.DecimalField):  # a string of digits: nothing to escape
                value, kind = f"round({value}, {field.decimal_places})", "string"
        pairs.append((name, json_value_sql(value, kind, plain=plain)))
    order = ", ".join(
        f"t.{model._meta.get_field(key.lstrip('-')).column}{' DESC' if key.startswith('-') else ''}"
        for key in model._meta.ordering
    )
    rows = f"string_agg({json_object_sql(pairs, json_values=True)}, ',' ORDER BY {order}, t.id DESC)"
    table = f"{model._meta.db_table} t{''.join(joins)}"
    return f"(SELECT '[' || COALESCE({rows}, '') || ']' FROM {table} WHERE t.patient_id = p.id)"  # noqa: S608


_BOOKLET_SERIALIZERS = {
    "courses": CourseSerializer,
    "doses": DoseSerializer,
    "labs": LabSerializer,
    "dental_events": DentalEventSerializer,
    "comedications": ComedicationSerializer,
}
_BODY_SQL = json_object_sql(
    [(name, _list_sql(_BOOKLET[name][0], serializer)) for name, serializer in _BOOKLET_SERIALIZERS.items()],
    json_values=True,
)
# The booklet's revision: ``patients_patient.booklet_revision``, a number that triggers on the five
# booklet tables change on every insert, update or delete of one of the patient's rows, whoever
# writes it (a service, the admin, a bulk update, a COPY; patients/migrations/0003_booklet_revision.py).
# Reading it is reading the patient's row: the token's auth query does, so a booklet 304 is that
# one statement, as the plan's. Not a model field: only the triggers write it.
_REVISION_SQL = "p.booklet_revision"
# The instants are written in the reader's time zone: the statement sets the session's to it for
# itself and puts it back in its last column (``backend.conditional.session_zone_sql``).
_SET_ZONE, _PUT_ZONE_BACK = session_zone_sql("%s::text")
_PATIENT_SQL = f"(SELECT id, public_id, booklet_revision, {_SET_ZONE} FROM patients_patient WHERE id = %s) p"  # noqa: S608
BOOKLET_SQL = f"SELECT {_BODY_SQL}, {_PUT_ZONE_BACK} FROM {_PATIENT_SQL}"  # noqa: S608  # the models' metadata only
# The body and its revision read by one statement, in one snapshot: the ETag names that body.
_BOOKLET_STATEMENT = Prepared(
    "carnet_booklet",
    f"SELECT {_BODY_SQL}, {_REVISION_SQL}, {_PUT_ZONE_BACK} FROM {_PATIENT_SQL}",  # noqa: S608  # the models' metadata only
    ("text", "bigint"),
)
BOOKLET_REVISION_SQL = f"SELECT {_REVISION_SQL} FROM patients_patient p WHERE p.id = %s"  # noqa: S608  # constant
_BOOKLET_REVISION = Prepared("carnet_booklet_revision", BOOKLET_REVISION_SQL, ("bigint",))
# The same revision read by the token's auth query for ``GET /me/booklet`` (the patient is ``p`` there too).
BOOKLET_AT_AUTH = AtAuth("booklet", _REVISION_SQL)
# Part of every booklet ETag: the statement that renders it (a new field, a new format).
_BOOKLET_FORMAT = hashlib.blake2b(BOOKLET_SQL.encode(), digest_size=6).hexdigest()


def _zone() -> str:
    zone = timezone.get_current_timezone()  # DRF renders instants in it
    return str(getattr(zone, "key", zone))


def _booklet_etag(patient: Patient, zone: str, revision: str) -> str:
    tag = f"{_BOOKLET_FORMAT}|{zone}|{patient.pk}|{revision}"
    return f'W/"booklet-{hashlib.blake2b(tag.encode(), digest_size=12).hexdigest()}"'


def booklet_etag(patient: Patient) -> str | None:
    """The ETag of ``patient``'s booklet, known before rendering it: its revision, the time zone
    of its instants and its format (PostgreSQL). None elsewhere: hash the rendered body."""
    if connection.vendor != "postgresql":
        return None
    revision = read_at_auth(patient, BOOKLET_AT_AUTH)  # GET /me/booklet: read with the token's user
    if revision is None:
        with connection.cursor() as cursor:
            _BOOKLET_REVISION.run(cursor, [patient.pk])
            revision = str(cursor.fetchone()[0])
    return _booklet_etag(patient, _zone(), revision)


def booklet_rendered(patient: Patient) -> tuple[bytes, str | None]:
    """The booklet of ``patient`` as JSON, and the ETag of that very body (None off PostgreSQL).

    One prepared statement on PostgreSQL; ``booklet_data`` elsewhere.
    """
    if connection.vendor != "postgresql":
        return JSONRenderer().render(booklet_data(patient)), None
    zone = _zone()
    body, revision, _ = _BOOKLET_STATEMENT.fetchone([zone, patient.pk])
    return str(body).encode(), _booklet_etag(patient, zone, str(revision))


def booklet_json(patient: Patient) -> bytes:
    """The booklet of ``patient`` as JSON: one prepared statement on PostgreSQL, ``booklet_data`` elsewhere."""
    return booklet_rendered(patient)[0]
