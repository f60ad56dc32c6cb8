"""The overdue worklist, ranked by risk: escalation level, who was told, acknowledge, outcomes, blocks."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from backend.errors import CarnetError
from scheduling.models import Escalation, PlanItem
from scheduling.services import escalation_acknowledge
from scheduling.worklist import item_blocks, rebound_risk_count
from web import selectors
from web.forms import OutcomeForm
from web.models import WorklistOutcome
from web.scope import get_scoped, scope_of, staff_view
from web.services import worklist_outcome_record
from web.views.common import lang, safe_next

AUDIENCES = {
    "patient": gettext_lazy("patient"),
    "nurse": gettext_lazy("nurse"),
    "physician": gettext_lazy("physician"),
    "specialist": gettext_lazy("specialist"),
}


def told(escalation: Escalation) -> list[dict[str, Any]]:
    """Who was told about this level: each outbox message (recipient, channel, state)."""
    out = []
    for message in escalation.outbox.all():
        if message.recipient_user is not None:
            who = message.recipient_user.get_full_name() or message.recipient_user.email
        else:
            who = str(AUDIENCES["patient"])
        out.append(
            {
                "who": who,
                "channel": message.channel,
                "state": message.get_state_display(),
                "sent_at": message.sent_at,
                "send_at": message.send_at,
            }
        )
    return out


@staff_view
def worklist_view(request: HttpRequest) -> HttpResponse:
    scope = scope_of(request)
    language = lang()
    items = list(selectors.worklist(team_id=scope.team.pk))
    booked = selectors.booked_appointments([i.pk for i in items])
    rows = []
    for rank, item in enumerate(items, start=1):
        escalations = list(item.escalations.all())
        rows.append(
            {
                "rank": rank,
                "item": item,
                "patient": item.patient,
                "rebound": bool(getattr(item, "rebound_risk", 0)),
                "blocks": item_blocks(item, language),
                "escalations": [
                    {
                        "e": e,
                        "notify": [str(AUDIENCES.get(a, a)) for a in e.notify],
                        "told": told(e),
                    }
                    for e in escalations
                ],
                "open_unacknowledged": [e for e in escalations if e.acknowledged_at is None and e.resolved_at is None],
                "outcomes": list(item.worklist_outcomes.all())[:3],
                "appointment": booked.get(item.pk),
            }
        )
    return render(
        request,
        "web/worklist.html",
        {
            "rows": rows,
            "rebound_count": rebound_risk_count(team_ids=[scope.team.pk]),
            "blocked_count": sum(1 for r in rows if r["blocks"]),
            "outcome_choices": WorklistOutcome.Outcome.choices,
        },
    )


@require_POST
@staff_view
def acknowledge_view(request: HttpRequest, escalation_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    escalation = get_scoped(
        Escalation.objects.select_related("plan_item"), "patient__care_team_id", scope, public_id=escalation_id
    )
    try:
        escalation_acknowledge(escalation=escalation, by=scope.user)
    except CarnetError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Level %(level)s acknowledged.") % {"level": escalation.level})
    return redirect(safe_next(request, f"{reverse('web:worklist')}#item-{escalation.plan_item.public_id}"))


@require_POST
@staff_view
def outcome_view(request: HttpRequest, item_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    item = get_scoped(PlanItem.objects.select_related("patient"), "patient__care_team_id", scope, public_id=item_id)
    back = f"{reverse('web:worklist')}#item-{item.public_id}"
    form = OutcomeForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose an outcome: called, rescheduled or given."))
        return redirect(back)
    try:
        row = worklist_outcome_record(
            plan_item=item, outcome=form.cleaned_data["outcome"], by=scope.user, note=form.cleaned_data["note"]
        )
    except CarnetError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, _("Recorded: %(outcome)s.") % {"outcome": row.get_outcome_display()})
    if row.outcome == WorklistOutcome.Outcome.GIVEN:
        # The dose itself goes in the booklet, with its lot number: that is what closes the item.
        return redirect(f"{reverse('web:dose-new', args=[item.patient.public_id])}?item={item.public_id}")
    if row.outcome == WorklistOutcome.Outcome.RESCHEDULED:
        return redirect("web:book", item_id=item.public_id)
    return redirect(back)
