"""Worklist outcomes in the admin: read-only, scoped to the user's care teams, with their history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from patients.admin import ScopedAdminMixin
from web.models import WorklistOutcome


@admin.register(WorklistOutcome)
class WorklistOutcomeAdmin(ScopedAdminMixin, SimpleHistoryAdmin):  # type: ignore[misc]  # untyped base
    team_path = "patient__care_team"
    list_display = ("recorded_at", "patient", "outcome", "recorded_by", "plan_item")
    list_filter = ("outcome",)
    list_select_related = ("patient", "recorded_by", "plan_item")
    readonly_fields = ("public_id", "plan_item", "patient", "outcome", "note", "recorded_by", "recorded_at")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # recorded from the worklist, through web.services

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
