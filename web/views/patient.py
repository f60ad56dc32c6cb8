"""The patient page (booklet as a timeline, adherence, plan) and its actions: record or void a dose,
add a lab or a dental event, start a course (plan preview first), stop one (consolidation preview first).

Every write goes through ``patients.services``: they validate, audit and re-plan in one transaction;
a refused input comes back on the form field it names and nothing is stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from backend.errors import CarnetError
from patients import services
from patients.models import (
    PRODUCT_RULES,
    PROTOCOL_PRODUCT,
    DentalEvent,
    DoseRecord,
    LabResult,
    Patient,
    Protocol,
    TreatmentCourse,
)
from scheduling import selectors as plan_selectors
from scheduling.models import OPEN_STATUSES, PlanItem
from scheduling.rules import engine
from scheduling.rules import facts as rf
from scheduling.rules.preview import render as render_plan
from scheduling.rules.unblock import unblock_hint
from scheduling.services import patient_today, plan_compute
from scheduling.worklist import item_blocks
from web import selectors, timeline
from web.forms import CourseStartForm, CourseStopForm, DentalForm, DoseForm, LabForm, VoidForm, apply_error
from web.scope import get_scoped, scope_of, staff_view
from web.views.common import lang, team_today


def _patient(request: HttpRequest, patient_id: UUID) -> Patient:
    return get_scoped(
        Patient.objects.select_related("care_team"), "care_team_id", scope_of(request), public_id=patient_id
    )


def patient_url(patient: Patient, anchor: str = "") -> str:
    return reverse("web:patient", args=[patient.public_id]) + (f"#{anchor}" if anchor else "")


@staff_view
def patient_list(request: HttpRequest) -> HttpResponse:
    scope = scope_of(request)
    q = request.GET.get("q", "").strip()
    rows = Patient.objects.filter(care_team_id=scope.team.pk)
    for word in q.split()[:4]:
        rows = rows.filter(Q(last_name__icontains=word) | Q(first_name__icontains=word))
    page = Paginator(rows.order_by("last_name", "first_name", "pk"), 50).get_page(request.GET.get("page"))
    return render(request, "web/patients.html", {"page": page, "q": q})


@staff_view
def patient_view(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    patient = _patient(request, patient_id)
    today = patient_today(patient)
    language = lang()
    adherence, windows = selectors.patient_adherence(patient, today=today)
    doses = list(patient.doses.select_related("course", "given_by", "voided_by").order_by("-given_at"))
    labs = list(patient.labs.order_by("-drawn_at"))
    dental = list(patient.dental_events.order_by("-date"))
    courses = list(patient.courses.select_related("prescriber").order_by("-start_date"))
    open_items = list(patient.plan_items.filter(status__in=OPEN_STATUSES, closed_at__isnull=True).order_by("due"))
    config = plan_selectors.rules_config()
    live_labs = [lab for lab in labs if lab.voided_at is None]
    picture = timeline.build(
        today=today,
        windows=windows,
        doses=[d for d in doses if d.voided_at is None],
        open_items=open_items,
        labs=live_labs,
        dental=[e for e in dental if e.voided_at is None],
        calcium_range=timeline.Range(config.calcium_low_mmol_l, config.calcium_high_mmol_l),
    )
    window_of = {w.dose.key: w for w in windows}
    plan = plan_compute(patient, today=today)
    horizon = today + timedelta(days=366)
    return render(
        request,
        "web/patient.html",
        {
            "patient": patient,
            "today": today,
            "age": today.year
            - patient.birth_date.year
            - ((today.month, today.day) < (patient.birth_date.month, patient.birth_date.day)),
            "adherence": adherence,
            "timeline": picture,
            "doses": [{"d": d, "w": window_of.get(str(d.pk))} for d in doses],
            "labs": labs,
            "dental": dental,
            "courses": courses,
            # The plan table: what is actionable now and the next 12 months; later items are counted.
            "items": [{"item": i, "blocks": item_blocks(i, language)} for i in open_items if i.due <= horizon],
            "later_count": sum(1 for i in open_items if i.due > horizon),
            "flags": [
                {"code": f.code, "rule": f.rule, "severity": f.severity, "message": f.message(language)}
                for f in plan.flags
                if f.severity in ("W", "H", "C") or f.blocks
            ],
            "booked": selectors.booked_appointments([i.pk for i in open_items]),
        },
    )


# --- doses -------------------------------------------------------------------------------------


def _live_courses(patient: Patient) -> list[TreatmentCourse]:
    return list(patient.courses.filter(voided_at__isnull=True, stop_date__isnull=True).order_by("start_date"))


@staff_view
def dose_new(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    patient = _patient(request, patient_id)
    courses = _live_courses(patient)
    item_uuid = _uuid(request.GET.get("item", ""))
    item = PlanItem.objects.filter(patient=patient, public_id=item_uuid).first() if item_uuid else None
    if request.method == "POST":
        form = DoseForm(request.POST, courses=courses)
        if form.is_valid():
            data = form.cleaned_data
            rules = PRODUCT_RULES[data["product"]]
            try:
                dose = services.dose_record(
                    patient=patient,
                    product=data["product"],
                    dose_value=data["dose_value"],
                    dose_unit=str(rules["unit"]),
                    route=str(rules["route"]),
                    given_at=data["given_at"],
                    by=scope.user,
                    course=data["course"],
                    injection_site=data["injection_site"],
                    lot_number=data["lot_number"],
                    given_by=scope.user,
                    override_reason=data["override_reason"],
                )
            except CarnetError as exc:
                if exc.code in ("override_required", "blocked"):
                    form.add_error("override_reason" if exc.code == "override_required" else None, gate_message(exc))
                else:
                    apply_error(form, exc, {"dose_unit": "product", "route": "product"})
            else:
                messages.success(
                    request,
                    _("Dose recorded: %(dose)s, lot %(lot)s.")
                    % {
                        "dose": f"{dose.get_product_display()} {dose.dose_value:g} {dose.dose_unit}",
                        "lot": dose.lot_number or "—",
                    },
                )
                return redirect(patient_url(patient, "booklet"))
    else:
        course = next((c for c in courses if item is not None and c.pk == item.course_id), None)
        course = course or next((c for c in courses if c.protocol != Protocol.VITAMIN_D), None)
        initial: dict[str, Any] = {"given_at": timezone.localtime().replace(second=0, microsecond=0)}
        if course is not None:
            product, doses = PROTOCOL_PRODUCT[Protocol(course.protocol)]
            initial.update(course=course, product=product.value, dose_value=Decimal(doses[0]) if doses else None)
        form = DoseForm(initial=initial, courses=courses)
    return render(request, "web/dose_form.html", {"patient": patient, "form": form, "item": item})


def gate_message(exc: CarnetError) -> str:
    """A refused dose (CA-03/05, VITD-04, DENT-01/02, ZOL-03…), explained with what unblocks it."""
    found = re.search(r"\(([^)]*)\)", exc.message)
    codes = [c.strip() for c in found.group(1).split(",")] if found else []
    hints = " ".join(unblock_hint(c, lang()) or c for c in codes)
    values = {"codes": ", ".join(codes), "hints": hints}
    if exc.code == "override_required":
        return _("This dose is blocked (%(codes)s). %(hints)s In an emergency, give an override reason.") % values
    return _("This dose is blocked (%(codes)s) and the block cannot be overridden. %(hints)s") % values


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


@staff_view
def dose_void(request: HttpRequest, patient_id: UUID, dose_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    patient = _patient(request, patient_id)
    dose = get_scoped(DoseRecord.objects.filter(patient=patient), "patient__care_team_id", scope, public_id=dose_id)
    form = VoidForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.dose_void(dose=dose, reason=form.cleaned_data["reason"], by=scope.user)
        except CarnetError as exc:
            apply_error(form, exc)
        else:
            messages.success(request, _("Dose voided."))
            return redirect(patient_url(patient, "booklet"))
    return render(request, "web/void_form.html", {"patient": patient, "dose": dose, "form": form})


# --- labs and dental events ------------------------------------------------------------------------


@staff_view
def lab_new(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    patient = _patient(request, patient_id)
    if request.method == "POST":
        form = LabForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                lab = services.lab_add(
                    patient=patient,
                    test=data["test"],
                    value=data["value"],
                    unit=data["unit"],
                    drawn_at=data["drawn_at"],
                    by=scope.user,
                    albumin_g_l=data["albumin_g_l"],
                    reference_low=data["reference_low"],
                    reference_high=data["reference_high"],
                )
            except CarnetError as exc:
                apply_error(form, exc, {"value_entered": "value", "unit_entered": "unit"})
            else:
                messages.success(
                    request,
                    _("Lab result added: %(lab)s.") % {"lab": f"{lab.get_test_display()} {lab.value:g} {lab.unit}"},
                )
                return redirect(patient_url(patient, "labs"))
    else:
        form = LabForm(
            initial={
                "drawn_at": timezone.localtime().replace(second=0, microsecond=0),
                "test": LabResult.Test.CALCIUM_TOTAL,
                "unit": "mmol/L",
            }
        )
    return render(request, "web/lab_form.html", {"patient": patient, "form": form})


@staff_view
def dental_new(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    patient = _patient(request, patient_id)
    if request.method == "POST":
        form = DentalForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.dental_event_add(
                    patient=patient,
                    event=data["event"],
                    on=data["on"],
                    by=scope.user,
                    dentist=data["dentist"],
                    notes=data["notes"],
                )
            except CarnetError as exc:
                apply_error(form, exc, {"date": "on"})
            else:
                messages.success(request, _("Dental event added."))
                return redirect(patient_url(patient, "dental"))
    else:
        form = DentalForm(initial={"on": team_today(scope_of(request)), "event": DentalEvent.Event.EXAM})
    return render(request, "web/dental_form.html", {"patient": patient, "form": form})


# --- courses: preview first, then confirm ------------------------------------------------------------


def preview_token(values: dict[str, Any]) -> str:
    """A fingerprint of what was previewed: "confirm" saves only what the nurse has just seen."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:32]


def plan_diff(patient: Patient, *, today: date, change: Any) -> dict[str, Any]:
    """The plan with ``change`` applied to the patient's facts, against today's plan (nothing stored)."""
    config = plan_selectors.rules_config()
    facts = plan_selectors.plan_inputs([patient], today_by_patient={patient.pk: today})[patient.pk]
    language = lang()
    before = render_plan(engine.compute_plan(facts, today=today, config=config), lang=language)
    after = render_plan(engine.compute_plan(change(facts), today=today, config=config), lang=language)
    old = {i["key"]: i for i in before["items"]}
    new = {i["key"]: i for i in after["items"]}
    old_flags = {(f["code"], f["subject"]) for f in before["flags"]}
    return {
        "added": [i for k, i in new.items() if k not in old],
        "removed": [i for k, i in old.items() if k not in new],
        "changed": [
            i for k, i in new.items() if k in old and (old[k]["due"], old[k]["status"]) != (i["due"], i["status"])
        ],
        "flags": [
            f for f in after["flags"] if (f["code"], f["subject"]) not in old_flags and f["severity"] in ("W", "H", "C")
        ],
        "items": after["items"],
    }


def _preview_then_confirm(
    request: HttpRequest,
    form: forms.Form,
    *,
    patient: Patient,
    today: date,
    save: Callable[[dict[str, Any]], object],
    change: Callable[[dict[str, Any]], Callable[[rf.PlanInput], rf.PlanInput]],
    success: str,
    field_map: dict[str, str] | None = None,
) -> tuple[HttpResponse | None, dict[str, Any] | None, str]:
    """A course change is previewed first; "confirm" saves exactly the values just previewed.

    Returns (redirect once saved, the plan difference to show, the preview token).
    """
    if not form.is_valid():
        return None, None, ""
    data = form.cleaned_data
    token = preview_token(data)
    if request.POST.get("action") == "confirm":
        if request.POST.get("previewed") != token:
            messages.warning(request, _("The values changed since the preview: check it, then confirm."))
        else:
            try:
                save(data)
            except CarnetError as exc:
                apply_error(form, exc, field_map)
            else:
                messages.success(request, success)
                return redirect(patient_url(patient, "plan")), None, token
    if not form.is_valid():
        return None, None, token
    return None, plan_diff(patient, today=today, change=change(data)), token


@staff_view
def course_new(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    patient = _patient(request, patient_id)
    today = patient_today(patient)
    preview = None
    token = ""
    if request.method == "POST":
        form = CourseStartForm(request.POST)

        def save(data: dict[str, Any]) -> object:
            return services.course_start(
                patient=patient,
                protocol=data["protocol"],
                start_date=data["start_date"],
                by=scope.user,
                planned_duration_months=data["planned_duration_months"],
                response=data["response"] or "",
            )

        def change(data: dict[str, Any]) -> Callable[[rf.PlanInput], rf.PlanInput]:
            new_course = rf.Course(
                key="new", protocol=data["protocol"], start_date=data["start_date"], response=data["response"] or None
            )
            return lambda f: dataclasses.replace(f, courses=(*f.courses, new_course))

        done, preview, token = _preview_then_confirm(
            request, form, patient=patient, today=today, save=save, change=change, success=_("Course started.")
        )
        if done is not None:
            return done
    else:
        form = CourseStartForm(initial={"start_date": today, "protocol": Protocol.DENOSUMAB_OP})
    return render(
        request,
        "web/course_form.html",
        {"patient": patient, "form": form, "preview": preview, "token": token, "mode": "start"},
    )


@staff_view
def course_stop(request: HttpRequest, patient_id: UUID, course_id: UUID) -> HttpResponse:
    scope = scope_of(request)
    patient = _patient(request, patient_id)
    course = get_scoped(
        TreatmentCourse.objects.filter(patient=patient, voided_at__isnull=True),
        "patient__care_team_id",
        scope,
        public_id=course_id,
    )
    today = patient_today(patient)
    preview = None
    token = ""
    if course.stop_date is not None:
        messages.info(request, _("This course is already stopped."))
        return redirect(patient_url(patient, "courses"))
    if request.method == "POST":
        form = CourseStopForm(request.POST)

        def save(data: dict[str, Any]) -> object:
            return services.course_stop(
                course=course,
                stop_date=data["stop_date"],
                reason=data["reason"],
                by=scope.user,
                consolidation=data["consolidation"],
            )

        def change(data: dict[str, Any]) -> Callable[[rf.PlanInput], rf.PlanInput]:
            stop = rf.Stop(date=data["stop_date"], consolidation=data["consolidation"] or None)
            key = str(course.pk)
            return lambda f: dataclasses.replace(
                f, courses=tuple(dataclasses.replace(c, stop=stop) if c.key == key else c for c in f.courses)
            )

        done, preview, token = _preview_then_confirm(
            request,
            form,
            patient=patient,
            today=today,
            save=save,
            change=change,
            success=_("Course stopped."),
            field_map={"stop_reason": "reason"},
        )
        if done is not None:
            return done
    else:
        form = CourseStopForm(initial={"stop_date": today})
    return render(
        request,
        "web/course_form.html",
        {
            "patient": patient,
            "form": form,
            "preview": preview,
            "token": token,
            "mode": "stop",
            "course": course,
            "is_denosumab_op": course.protocol == Protocol.DENOSUMAB_OP,
        },
    )
