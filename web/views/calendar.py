"""The injection calendar: day, week and month views of the team's appointments, the due items not
yet booked (most urgent first), booking from an item, moving and cancelling an appointment.

Server-rendered: every view is a plain page with links and forms, so it works from the keyboard,
prints, and needs no JSON API or client code to stay in step with the services.
"""

from __future__ import annotations

import calendar as pycalendar
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from backend.errors import CarnetError, Conflict
from patients.models import User
from scheduling.appointments import appointment_book, appointment_cancel, appointment_move, item_window
from scheduling.models import Appointment, PlanItem
from web import selectors
from web.forms import BookForm, CancelForm, SlotForm, apply_error, slot_times
from web.scope import Scope, get_scoped, scope_of, staff_view
from web.views.common import local_instant, parse_day, team_today

VIEWS = ("day", "week", "month")


def calendar_url(view: str, day: date, anchor: str = "") -> str:
    return f"{reverse('web:calendar')}?view={view}&date={day.isoformat()}" + (f"#{anchor}" if anchor else "")


@dataclass
class Slot:
    at: time
    free: bool
    why: str  # what makes it unavailable, for the label


def nurse_slots(*, nurse: User | None, day: date, scope: Scope, exclude_pk: int | None = None) -> list[Slot]:
    """The day's slots for ``nurse``: taken ones name the clashing appointment (same nurse, same time)."""
    busy: list[Appointment] = []
    if nurse is not None:
        start, end = selectors.day_bounds(day, day, scope.tz)
        rows = Appointment.objects.filter(
            nurse=nurse, status=Appointment.Status.BOOKED, starts_at__lt=end, ends_at__gt=start
        ).select_related("patient")
        if exclude_pk is not None:
            rows = rows.exclude(pk=exclude_pk)
        busy = list(rows)
    now = timezone.now()
    out = []
    for at in slot_times():
        begins = local_instant(day, at, scope)
        ends = begins + timedelta(minutes=30)
        clash = next((a for a in busy if a.starts_at < ends and a.ends_at > begins), None)
        if clash is not None:
            who = (
                f"{clash.patient.last_name.upper()} {clash.patient.first_name}"
                if clash.patient.care_team_id in scope.team_ids
                else _("another team")
            )
            out.append(Slot(at, False, _("taken: %(who)s") % {"who": who}))
        elif ends <= now:
            out.append(Slot(at, False, _("past")))
        else:
            out.append(Slot(at, True, ""))
    return out


def slot_error(form: SlotForm, exc: CarnetError, item: PlanItem | None, day: date) -> str:
    """Put a booking error on its field; return the conflict to show above the form, if any."""
    if exc.code == "out_of_window" and item is not None:
        first, last = item_window(item)
        form.add_error(
            "out_of_window_reason",
            _("%(day)s is outside the due window (%(first)s to %(last)s): give a reason to book it.")
            % {
                "day": date_format(day, "l j F"),
                "first": date_format(first, "j F"),
                "last": date_format(last, "j F Y"),
            },
        )
        return ""
    apply_error(form, exc, {"starts_at": "slot", "ends_at": "duration"})
    return exc.message if isinstance(exc, Conflict) else ""


@staff_view
def calendar_view(request: HttpRequest) -> HttpResponse:
    scope = scope_of(request)
    today = team_today(scope)
    view = request.GET.get("view", "week")
    view = view if view in VIEWS else "week"
    anchor = parse_day(request.GET.get("date"), today)
    if view == "day":
        first = last = anchor
        prev_day, next_day = anchor - timedelta(days=1), anchor + timedelta(days=1)
        title = date_format(anchor, "l j F Y")
    elif view == "week":
        first = anchor - timedelta(days=anchor.weekday())
        last = first + timedelta(days=6)
        prev_day, next_day = first - timedelta(days=7), first + timedelta(days=7)
        title = _("Week of %(day)s") % {"day": date_format(first, "j F Y")}
    else:
        month_first = anchor.replace(day=1)
        month_last = month_first.replace(day=pycalendar.monthrange(anchor.year, anchor.month)[1])
        first = month_first - timedelta(days=month_first.weekday())
        last = month_last + timedelta(days=6 - month_last.weekday())
        prev_day = (month_first - timedelta(days=1)).replace(day=1)
        next_day = month_last + timedelta(days=1)
        title = date_format(month_first, "F Y")
    appointments = selectors.appointments_between(team_id=scope.team.pk, first=first, last=last, tz=scope.tz)
    by_day: dict[date, list[Appointment]] = defaultdict(list)
    for appt in appointments:
        by_day[timezone.localtime(appt.starts_at, scope.tz).date()].append(appt)
    days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    context: dict[str, Any] = {
        "view": view,
        "anchor": anchor,
        "today": today,
        "title": title,
        "prev_url": calendar_url(view, prev_day),
        "next_url": calendar_url(view, next_day),
        "today_url": calendar_url(view, today),
        "view_urls": [(v, calendar_url(v, anchor)) for v in VIEWS],
        "days": [(d, by_day.get(d, [])) for d in days],
        "weeks": [days[k : k + 7] for k in range(0, len(days), 7)],
        "by_day": by_day,
        "appointment_count": len(appointments),
        "unbooked": selectors.unbooked_items(team_id=scope.team.pk, today=today)[:40],
    }
    if view == "day":
        nurses = selectors.team_nurses(scope.team.pk)
        extra = [a.nurse for a in appointments if a.nurse is not None and a.nurse not in nurses]
        columns: list[User | None] = [*nurses, *dict.fromkeys(extra)]
        if any(a.nurse is None for a in appointments):
            columns.append(None)
        rows = []
        for at in slot_times():
            begins = local_instant(anchor, at, scope)
            ends = begins + timedelta(minutes=30)
            cells = []
            for nurse in columns:
                mine = [a for a in appointments if a.nurse_id == (nurse.pk if nurse else None)]
                starting = [a for a in mine if begins <= a.starts_at < ends]
                running = any(a.starts_at < begins < a.ends_at for a in mine)
                cells.append({"starting": starting, "running": running and not starting})
            rows.append({"at": at, "cells": cells})
        # Appointments outside the slot grid (before 8:00 or after 18:00) are listed under it.
        grid_start, grid_end = local_instant(anchor, slot_times()[0], scope), local_instant(anchor, time(18), scope)
        context.update(
            columns=columns,
            rows=rows,
            off_grid=[a for a in appointments if a.starts_at < grid_start or a.starts_at >= grid_end],
        )
    return render(request, "web/calendar.html", context)


def _default_day(item: PlanItem, today: date) -> date:
    """The window's first day if it is still ahead, else today (past the window, a reason is needed)."""
    first, _last = item_window(item)
    return first if today < first else today


@staff_view
def book_view(request: HttpRequest, item_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    item = get_scoped(
        PlanItem.objects.select_related("patient", "course"), "patient__care_team_id", scope, public_id=item_id
    )
    existing = Appointment.objects.filter(plan_item=item, status=Appointment.Status.BOOKED).first()
    if existing is not None:
        messages.info(request, _("This item is already booked; move the appointment instead."))
        return redirect("web:appointment", appointment_id=existing.public_id)
    today = team_today(scope)
    nurses = selectors.team_nurses(item.patient.care_team_id)
    user = scope.user
    default_nurse = user if any(n.pk == user.pk for n in nurses) else (nurses[0] if nurses else None)
    conflict = ""
    if request.method == "POST":
        form = BookForm(request.POST, nurses=nurses)
        if form.is_valid():
            day, nurse = form.cleaned_data["day"], form.cleaned_data["nurse"]
            starts_at = local_instant(day, form.cleaned_data["slot"], scope)
            try:
                appt = appointment_book(
                    plan_item=item,
                    starts_at=starts_at,
                    ends_at=starts_at + form.length,
                    nurse=nurse,
                    by=user,
                    out_of_window_reason=form.cleaned_data["out_of_window_reason"],
                )
            except CarnetError as exc:
                conflict = slot_error(form, exc, item, day)
            else:
                messages.success(
                    request,
                    _("Booked %(patient)s on %(when)s.")
                    % {
                        "patient": str(item.patient),
                        "when": date_format(timezone.localtime(appt.starts_at), "l j F H:i"),
                    },
                )
                return redirect(calendar_url("day", day, f"appt-{appt.public_id}"))
        day = form.cleaned_data.get("day") or parse_day(request.POST.get("day"), _default_day(item, today))
        nurse = form.cleaned_data.get("nurse") or default_nurse
    else:
        day = parse_day(request.GET.get("day"), _default_day(item, today))
        nurse = next((n for n in nurses if str(n.pk) == request.GET.get("nurse")), default_nurse)
        form = BookForm(initial={"day": day, "nurse": nurse, "duration": 30}, nurses=nurses)
    first, last = item_window(item)
    return render(
        request,
        "web/book.html",
        {
            "item": item,
            "patient": item.patient,
            "form": form,
            "day": day,
            "nurse": nurse,
            "nurses": nurses,
            "slots": nurse_slots(nurse=nurse, day=day, scope=scope),
            "selected_slot": request.POST.get("slot", ""),
            "window_first": first,
            "window_last": last,
            "outside": not first <= day <= last,
            "conflict": conflict,
        },
    )


def _appointment(request: HttpRequest, appointment_id: UUID) -> Appointment:
    return get_scoped(
        Appointment.objects.select_related("patient", "nurse", "plan_item", "care_team"),
        "care_team_id",
        scope_of(request),
        public_id=appointment_id,
    )


def _appointment_page(
    request: HttpRequest,
    appt: Appointment,
    *,
    move_form: SlotForm | None = None,
    cancel_form: CancelForm | None = None,
    conflict: str = "",
    status: int = 200,
) -> HttpResponse:
    scope = scope_of(request)
    local = timezone.localtime(appt.starts_at, scope.tz)
    length = int((appt.ends_at - appt.starts_at).total_seconds() // 60)
    if move_form is None:
        move_form = SlotForm(
            initial={
                "day": parse_day(request.GET.get("day"), local.date()),
                "slot": local.time(),
                "duration": length if length in (15, 30, 45, 60) else 30,
            }
        )
    day = move_form.cleaned_data.get("day") if move_form.is_bound and hasattr(move_form, "cleaned_data") else None
    day = day or parse_day(request.POST.get("day") or request.GET.get("day"), local.date())
    window = item_window(appt.plan_item) if appt.plan_item else None
    history = list(appt.history.select_related("history_user").order_by("-history_date")[:10])
    return render(
        request,
        "web/appointment.html",
        {
            "appt": appt,
            "patient": appt.patient,
            "local": local,
            "move_form": move_form,
            "cancel_form": cancel_form or CancelForm(),
            "slots": nurse_slots(nurse=appt.nurse, day=day, scope=scope, exclude_pk=appt.pk),
            "day": day,
            "selected_slot": request.POST.get("slot") or local.strftime("%H:%M"),
            "window": window,
            "conflict": conflict,
            "history": history,
        },
        status=status,
    )


@staff_view
def appointment_view(request: HttpRequest, appointment_id: UUID) -> HttpResponse:
    return _appointment_page(request, _appointment(request, appointment_id))


@require_POST
@staff_view
def appointment_move_view(request: HttpRequest, appointment_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    appt = _appointment(request, appointment_id)
    form = SlotForm(request.POST)
    conflict = ""
    if form.is_valid():
        starts_at = local_instant(form.cleaned_data["day"], form.cleaned_data["slot"], scope)
        try:
            moved = appointment_move(
                appointment=appt,
                starts_at=starts_at,
                ends_at=starts_at + form.length,
                by=scope.user,
                out_of_window_reason=form.cleaned_data["out_of_window_reason"],
            )
        except CarnetError as exc:
            conflict = slot_error(form, exc, appt.plan_item, form.cleaned_data["day"])
        else:
            messages.success(
                request,
                _("Appointment moved to %(when)s.")
                % {"when": date_format(timezone.localtime(moved.starts_at, scope.tz), "l j F H:i")},
            )
            return redirect(calendar_url("day", form.cleaned_data["day"], f"appt-{moved.public_id}"))
    return _appointment_page(request, appt, move_form=form, conflict=conflict)


@require_POST
@staff_view
def appointment_cancel_view(request: HttpRequest, appointment_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    appt = _appointment(request, appointment_id)
    form = CancelForm(request.POST)
    if form.is_valid():
        try:
            appointment_cancel(appointment=appt, by=scope.user, reason=form.cleaned_data["reason"])
        except CarnetError as exc:
            apply_error(form, exc)
        else:
            messages.success(request, _("Appointment cancelled."))
            local_day = timezone.localtime(appt.starts_at, scope.tz).date()
            return redirect(calendar_url("day", local_day))
    return _appointment_page(request, appt, cancel_form=form)
