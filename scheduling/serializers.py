"""API shapes of the plan: items with their window, status and explained flags; appointments;
escalations; the worklist. Messages are rendered in the language passed in the context (``lang``).

``flag_out`` and ``blocks_out`` live in ``scheduling.plan_state`` (the plan endpoints render
plain rows with them) and are re-exported here for the other lists.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from backend.api import ReadModelSerializer
from patients.serializers import AwareDateTimeField
from scheduling.models import Appointment, Escalation, PlanItem
from scheduling.plan_state import blocks_out, flag_out


def _lang(serializer: serializers.Serializer) -> str:  # type: ignore[type-arg]
    return str(serializer.context.get("lang", "fr"))


class FlagSerializer(serializers.Serializer):  # type: ignore[type-arg]
    code = serializers.CharField()
    rule = serializers.CharField()
    severity = serializers.CharField(help_text="I < W < H < C")
    blocks = serializers.BooleanField()
    override_allowed = serializers.BooleanField()
    message = serializers.CharField(help_text="The flag explained in the reader's language.")


class BlockSerializer(serializers.Serializer):  # type: ignore[type-arg]
    code = serializers.CharField()
    rule = serializers.CharField()
    message = serializers.CharField()
    unblock = serializers.CharField(help_text="What lifts the block.")
    override_allowed = serializers.BooleanField()


class PlanItemSerializer(ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    course = serializers.UUIDField(source="course.public_id", read_only=True, allow_null=True, default=None)
    escalation = serializers.DictField(
        child=serializers.DateField(), read_only=True, help_text="The date each escalation level opens (L1…L4)."
    )
    blocked_by = serializers.ListField(child=serializers.CharField(), read_only=True)
    days_late = serializers.IntegerField(
        read_only=True,
        help_text="Days past the due date on the patient's local today (0 unless due, overdue or blocked).",
    )
    flags = serializers.SerializerMethodField()
    blocks = serializers.SerializerMethodField()

    class Meta:
        model = PlanItem
        fields: tuple[str, ...] = (
            "id",
            "kind",
            "protocol",
            "product",
            "dose_mg",
            "phase",
            "ordinal",
            "rule",
            "course",
            "due",
            "window_start",
            "window_end",
            "reminder_on",
            "status",
            "level",
            "days_late",
            "escalation",
            "blocked_by",
            "blocks",
            "flags",
            "version",
        )
        read_only_fields: tuple[str, ...] = fields

    @extend_schema_field(FlagSerializer(many=True))
    def get_flags(self, item: PlanItem) -> Any:
        return FlagSerializer([flag_out(f, _lang(self)) for f in item.flags if isinstance(f, dict)], many=True).data

    @extend_schema_field(BlockSerializer(many=True))
    def get_blocks(self, item: PlanItem) -> Any:
        return BlockSerializer(blocks_out(item.blocked_by, item.flags, _lang(self)), many=True).data


class PlanSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The plan's shape (schema and tests); the endpoints render it from plain rows
    (``scheduling.plan_state.open_items``)."""

    today = serializers.DateField(help_text="Today in the patient's time zone.")
    language = serializers.CharField()
    items = PlanItemSerializer(many=True)
    flags = FlagSerializer(many=True, help_text="Flags about the patient as a whole, explained.")


class PatientRefSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(source="public_id")
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    birth_date = serializers.DateField()


class AppointmentSerializer(ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    patient = PatientRefSerializer(read_only=True)
    care_team = serializers.UUIDField(source="care_team.public_id", read_only=True)
    plan_item = serializers.UUIDField(source="plan_item.public_id", read_only=True, allow_null=True, default=None)
    nurse = serializers.UUIDField(source="nurse.public_id", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Appointment
        fields = (
            "id",
            "patient",
            "care_team",
            "plan_item",
            "nurse",
            "starts_at",
            "ends_at",
            "status",
            "out_of_window_reason",
            "sequence",
            "created_at",
            "updated_at",
            "cancelled_at",
        )
        read_only_fields = fields


class AppointmentBookSerializer(serializers.Serializer):  # type: ignore[type-arg]
    plan_item = serializers.UUIDField(help_text="The plan item to book (one of your care teams' patients).")
    starts_at = AwareDateTimeField()
    ends_at = AwareDateTimeField(required=False, allow_null=True, help_text="Default: 30 minutes later.")
    nurse = serializers.UUIDField(required=False, allow_null=True, help_text="Default: you.")
    out_of_window_reason = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="Required to book outside the item's due window: say why.",
    )


class AppointmentMoveSerializer(serializers.Serializer):  # type: ignore[type-arg]
    starts_at = AwareDateTimeField()
    ends_at = AwareDateTimeField(required=False, allow_null=True, help_text="Default: keeps the length.")
    out_of_window_reason = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class AppointmentCancelSerializer(serializers.Serializer):  # type: ignore[type-arg]
    reason = serializers.CharField(max_length=2000)


class EscalationSerializer(ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    patient = PatientRefSerializer(read_only=True)
    plan_item = serializers.UUIDField(source="plan_item.public_id", read_only=True)
    kind = serializers.CharField(source="plan_item.kind", read_only=True)
    due = serializers.DateField(source="plan_item.due", read_only=True)
    notify = serializers.ListField(child=serializers.CharField(), read_only=True)
    acknowledged_by = serializers.UUIDField(
        source="acknowledged_by.public_id", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Escalation
        fields = (
            "id",
            "patient",
            "plan_item",
            "kind",
            "due",
            "level",
            "rule",
            "severity",
            "notify",
            "opened_at",
            "opened_on",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolution",
        )
        read_only_fields = fields


class EscalationResolveSerializer(serializers.Serializer):  # type: ignore[type-arg]
    resolution = serializers.CharField(max_length=30, help_text="What was decided (e.g. given, deferred, stopped).")


class WorklistEscalationSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.UUIDField(source="public_id")
    level = serializers.CharField()
    opened_on = serializers.DateField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)


class WorklistItemSerializer(PlanItemSerializer):
    patient = PatientRefSerializer(read_only=True)
    rebound_risk = serializers.BooleanField(
        read_only=True, help_text="Denosumab more than 7 months after the last dose (OP-05)."
    )
    escalations = WorklistEscalationSerializer(many=True, read_only=True)

    class Meta(PlanItemSerializer.Meta):
        fields = ("patient", "rebound_risk", "escalations", *PlanItemSerializer.Meta.fields)
        read_only_fields = fields
