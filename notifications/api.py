"""Patient endpoints for reminders: preferences (read by ``/me``) and push devices.

Writes go through ``notifications.services`` (``preference_set``, ``device_register``,
``device_deactivate``), which re-time the pending reminders of the patient.
"""

from __future__ import annotations

from datetime import time
from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.api import IsPatient, LocalTimeField, ReadModelSerializer, errors, id_parameter, user_of, uuid_or_404
from backend.errors import CarnetError
from idempotency.services import idempotent
from notifications.models import PUSH_CHANNELS, Channel, Device, NotificationPreference
from notifications.services import device_deactivate, device_register, preference_set
from patients.models import Language, Patient

DEFAULT_TIME_OF_DAY = time(9, 0)


class PreferencesSerializer(serializers.Serializer):  # type: ignore[type-arg]
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices),
        max_length=len(Channel.choices),
        help_text="Channels to be reached on; empty means every channel consented to.",
    )
    time_of_day = LocalTimeField(help_text="Preferred local time for reminders.")
    quiet_start = LocalTimeField(allow_null=True, help_text="Quiet hours from (local), or null.")
    quiet_end = LocalTimeField(allow_null=True, help_text="Quiet hours until (local), or null.")
    language = serializers.ChoiceField(
        choices=Language.choices, allow_blank=True, help_text="Language of reminders; blank follows the profile."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("quiet_start" in attrs) != ("quiet_end" in attrs) or (attrs.get("quiet_start") is None) != (
            attrs.get("quiet_end") is None
        ):
            raise serializers.ValidationError({"quiet_end": _("Give both ends of the quiet hours, or neither.")})
        return attrs


def preferences_data(pref: NotificationPreference | None) -> dict[str, Any]:
    if pref is None:
        return {
            "channels": [],
            "time_of_day": DEFAULT_TIME_OF_DAY,
            "quiet_start": None,
            "quiet_end": None,
            "language": "",
        }
    return {
        "channels": list(pref.channels),
        "time_of_day": pref.time_of_day,
        "quiet_start": pref.quiet_start,
        "quiet_end": pref.quiet_end,
        "language": pref.language,
    }


def preferences_of(patient: Patient) -> NotificationPreference | None:
    return NotificationPreference.objects.filter(patient=patient).first()


def preferences_update(*, patient: Patient, changes: dict[str, Any]) -> NotificationPreference:
    """PATCH semantics over ``preference_set`` (which sets every field it is given)."""
    current = preferences_data(preferences_of(patient))
    current.update(changes)
    return preference_set(
        patient=patient,
        channels=current["channels"],
        time_of_day=current["time_of_day"],
        quiet_start=current["quiet_start"],
        quiet_end=current["quiet_end"],
        language=current["language"],
    )


class DeviceSerializer(ReadModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = Device
        fields = ("id", "channel", "active", "created_at", "deactivated_at", "deactivation_reason")
        read_only_fields = fields


class DeviceRegisterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    channel = serializers.ChoiceField(choices=[(c.value, c.label) for c in PUSH_CHANNELS])
    endpoint = serializers.CharField(max_length=2000, help_text="Web Push endpoint URL, or the FCM/APNs token.")
    p256dh = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    auth = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


def _patient(request: Request) -> Patient:
    return user_of(request).patient


class MeDevicesView(APIView):
    permission_classes = [IsPatient]

    @extend_schema(
        operation_id="me_devices_list",
        responses={200: DeviceSerializer(many=True), **errors(401, 403, 429)},
        tags=["me"],
    )
    def get(self, request: Request) -> Response:
        """My push devices (active and deactivated)."""
        devices = Device.objects.filter(patient=_patient(request)).order_by("-created_at")
        return Response(DeviceSerializer(devices, many=True).data)

    @extend_schema(
        operation_id="me_devices_register",
        request=DeviceRegisterSerializer,
        responses={201: DeviceSerializer, **errors(400, 401, 403, 422, 429)},
        tags=["me"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        """Register this phone or browser for push reminders (re-registering re-activates it)."""
        body = DeviceRegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        patient = _patient(request)
        with transaction.atomic():
            owner = Device.objects.filter(
                channel=body.validated_data["channel"], endpoint=body.validated_data["endpoint"]
            ).first()
            if owner is not None and owner.user_id is not None:
                raise CarnetError(_("This device is registered to a staff account."), field="endpoint")
            device = device_register(patient=patient, **body.validated_data)
        return Response(DeviceSerializer(device).data, status=status.HTTP_201_CREATED)


class MeDeviceView(APIView):
    permission_classes = [IsPatient]

    @extend_schema(
        operation_id="me_devices_remove",
        parameters=[id_parameter()],
        responses={204: None, **errors(401, 403, 404, 429)},
        tags=["me"],
    )
    def delete(self, request: Request, id: str) -> Response:
        """Stop push reminders on this device; its pending reminders are cancelled."""
        device = get_object_or_404(Device, patient=_patient(request), public_id=uuid_or_404(id))
        device_deactivate(device=device, reason="removed by the patient")
        return Response(status=status.HTTP_204_NO_CONTENT)
