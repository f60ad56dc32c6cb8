"""The care-team dashboard: adherence by month and protocol (chart and table), rebound risk today."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from patients.models import Protocol
from scheduling.models import ItemStatus, PlanItem
from scheduling.worklist import WORKLIST_KINDS, rebound_risk_count
from web import selectors
from web.adherence import COUNTED_PROTOCOLS
from web.charts import PROTOCOL_CLASS, adherence_chart
from web.scope import scope_of, staff_view
from web.views.common import team_today


@staff_view
def dashboard_view(request: HttpRequest) -> HttpResponse:
    scope = scope_of(request)
    today = team_today(scope)
    cells = selectors.team_adherence_by_month(team_ids=[scope.team.pk], today=today, months=12)
    labels = {p: str(Protocol(p).label) for p in COUNTED_PROTOCOLS}
    months = sorted({c.month for c in cells})
    table = [
        {"month": m, "cells": [next(c for c in cells if c.month == m and c.protocol == p) for p in COUNTED_PROTOCOLS]}
        for m in months
    ]
    totals = []
    for p in COUNTED_PROTOCOLS:
        inside = sum(c.inside for c in cells if c.protocol == p)
        counted = sum(c.counted for c in cells if c.protocol == p)
        totals.append(
            {
                "protocol": p,
                "label": labels[p],
                "css": PROTOCOL_CLASS[p],
                "inside": inside,
                "counted": counted,
                "percent": round(100 * inside / counted) if counted else None,
            }
        )
    open_admin = PlanItem.objects.filter(
        patient__care_team_id=scope.team.pk, kind__in=WORKLIST_KINDS, closed_at__isnull=True
    )
    return render(
        request,
        "web/dashboard.html",
        {
            "today": today,
            "chart": adherence_chart(cells, labels),
            "table": table,
            "totals": totals,
            "protocol_labels": [labels[p] for p in COUNTED_PROTOCOLS],
            "rebound_count": rebound_risk_count(team_ids=[scope.team.pk]),
            "patient_count": scope.team.patients.count(),
            "overdue_count": open_admin.filter(status__startswith="overdue").count(),
            "blocked_count": open_admin.exclude(blocked_by=[])
            .filter(status__in=[ItemStatus.BLOCKED, *[s for s in ItemStatus.values if s.startswith("overdue")]])
            .count(),
            "unbooked_count": len(selectors.unbooked_items(team_id=scope.team.pk, today=today)),
        },
    )
