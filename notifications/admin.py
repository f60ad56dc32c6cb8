"""The outbox in the admin: every row read-only, dead rows easy to find, and the health summary.

Care staff see the rows of their own care teams' patients; superusers see everything. Nothing
is edited or deleted here: a dead row can be put back in the queue (audited) once its cause is
fixed.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from notifications.models import Device, NotificationPreference, OutboxMessage, OutboxState, SuppressedAddress, SweepRun
from notifications.selectors import outbox_health


def _team_scope(request: HttpRequest, qs: QuerySet[Any], patient_path: str) -> QuerySet[Any]:
    user = request.user
    if user.is_superuser:
        return qs
    team_ids = list(user.memberships.values_list("care_team_id", flat=True))  # type: ignore[union-attr]  # a logged-in User
    return qs.filter(**{f"{patient_path}__care_team_id__in": team_ids})


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyMixin, SimpleHistoryAdmin):  # type: ignore[misc]  # simple_history is untyped
    list_display = ("id", "kind", "channel", "state", "send_at", "attempts", "sent_at", "closed_reason", "short_key")
    list_filter = ("state", "channel", "kind", "closed_reason")
    search_fields = ("key", "provider_id")
    date_hierarchy = "send_at"
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]
    actions = ["requeue"]
    list_select_related = ()

    @admin.display(description="key")
    def short_key(self, obj: OutboxMessage) -> str:
        return obj.key[:12]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxMessage]:
        return _team_scope(request, super().get_queryset(request), "patient")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    @admin.action(description="Put the selected dead rows back in the queue")
    def requeue(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        now = timezone.now()
        rows = list(queryset.filter(state=OutboxState.DEAD))
        for row in rows:
            row.state, row.attempts, row.next_attempt_at, row.claim_token = OutboxState.PENDING, 0, now, ""
            row.closed_reason = ""
            row._history_user = request.user  # type: ignore[attr-defined]  # read by simple-history
            row.save(
                update_fields=["state", "attempts", "next_attempt_at", "claim_token", "closed_reason", "updated_at"]
            )
        messages.info(request, f"{len(rows)} row(s) back in the queue.")

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {**(extra_context or {}), "outbox_health": outbox_health()}
        response: HttpResponse = super().changelist_view(request, extra_context=extra)
        return response


@admin.register(Device)
class DeviceAdmin(ReadOnlyMixin, SimpleHistoryAdmin):  # type: ignore[misc]  # simple_history is untyped
    list_display = ("public_id", "channel", "active", "deactivated_at", "deactivation_reason", "created_at")
    list_filter = ("channel", "active")
    readonly_fields = [f.name for f in Device._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Device]:
        qs: QuerySet[Device] = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        teams = list(request.user.memberships.values_list("care_team_id", flat=True))  # type: ignore[union-attr]  # a logged-in User
        return qs.filter(Q(patient__care_team_id__in=teams) | Q(user=request.user))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(SimpleHistoryAdmin):  # type: ignore[misc]  # simple_history is untyped
    list_display = ("id", "patient", "user", "time_of_day", "quiet_start", "quiet_end", "language")
    raw_id_fields = ("patient", "user")


@admin.register(SuppressedAddress)
class SuppressedAddressAdmin(SimpleHistoryAdmin):  # type: ignore[misc]  # simple_history is untyped
    list_display = ("email", "reason", "created_at")
    search_fields = ("email",)


@admin.register(SweepRun)
class SweepRunAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]  # ModelAdmin is generic in stubs
    list_display = ("name", "last_started_at", "last_finished_at", "last_claimed", "last_sent", "runs")
