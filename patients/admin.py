"""The admin a nurse can use: find a patient by name or birth date, read and correct the booklet.

Access is by role, not by Django permission rows: an active ``is_staff`` user whose role is nurse,
physician or care-team admin sees the patients of the care teams they belong to
(``StaffMembership``) and nothing else; superusers see everything. Medical records are never
deleted: a wrong entry is voided with a reason (a "void with reason" box on each row, or the
"Void selected" action), voided rows are read-only, and every change is kept by
django-simple-history ("History" on each record). Reverting from the history page is disabled:
a revert would bypass the void rule; a correction is a new edit, which is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from patients.models import (
    STAFF_ROLES,
    CareTeam,
    Comedication,
    DentalEvent,
    DoseRecord,
    LabResult,
    MedicalRecord,
    Patient,
    Protocol,
    Role,
    StaffMembership,
    TreatmentCourse,
    User,
)
from patients.units import LAB_TESTS

# --- who may see what ------------------------------------------------------------------------


def _is_care_staff(request: HttpRequest) -> bool:
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    return bool(user.is_superuser) or getattr(user, "role", None) in STAFF_ROLES


def team_ids(request: HttpRequest) -> frozenset[int]:
    """The care teams of the request's user (cached on the request)."""
    cached: frozenset[int] | None = getattr(request, "_carnet_team_ids", None)
    if cached is None:
        cached = frozenset(
            StaffMembership.objects.filter(user_id=int(request.user.pk or 0)).values_list("care_team_id", flat=True)
        )
        request._carnet_team_ids = cached  # type: ignore[attr-defined]  # per-request cache
    return cached


def _team_of(obj: Any) -> int | None:
    if isinstance(obj, CareTeam):
        return obj.pk
    if isinstance(obj, Patient):
        return obj.care_team_id
    patient = getattr(obj, "patient", None)
    return patient.care_team_id if patient is not None else None


def _in_scope(request: HttpRequest, obj: Any) -> bool:
    if obj is None or request.user.is_superuser:
        return True
    return _team_of(obj) in team_ids(request)


def plan_sync(patient_ids: Iterable[int]) -> None:
    """Re-plan after an admin edit, in the admin's transaction (the plan follows the facts)."""
    from scheduling.services import plan_sync as sync

    for patient in Patient.objects.filter(pk__in=set(patient_ids)):
        sync(patient=patient)


class ScopedAdminMixin:
    """Role-based access and care-team scoping for every admin in this module."""

    team_path: ClassVar[str] = "care_team"  # lookup from the model to its CareTeam id

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]  # mixin over ModelAdmin
        if request.user.is_superuser:
            return qs
        if not _is_care_staff(request):
            return qs.none()
        return qs.filter(**{f"{self.team_path}__in": team_ids(request)})

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_care_staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_care_staff(request) and _in_scope(request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return _is_care_staff(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and getattr(obj, "voided_at", None) is not None:
            return False  # a voided record is read-only
        return _is_care_staff(request) and _in_scope(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # medical records and patients are voided or kept, never deleted

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)  # type: ignore[misc]  # mixin over ModelAdmin
        actions.pop("delete_selected", None)
        return actions


def _staff_users(request: HttpRequest) -> QuerySet[User]:
    qs = User.objects.filter(role__in=STAFF_ROLES, is_active=True)
    if not request.user.is_superuser:
        qs = qs.filter(memberships__care_team__in=team_ids(request)).distinct()
    return qs.order_by("last_name", "first_name")


# --- voiding --------------------------------------------------------------------------------


def _comedication_void(*, comedication: Comedication, reason: str, by: User | None) -> Comedication:
    # patients.services has no comedication_void yet; same steps as its other *_void services.
    with transaction.atomic():
        locked = Comedication.objects.select_for_update().get(pk=comedication.pk)
        if locked.voided_at is not None:
            raise ValidationError({"void_with_reason": _("This entry is already voided.")})
        locked.voided_at = timezone.now()
        locked.voided_by = by
        locked.void_reason = reason.strip()
        locked._history_user = by  # type: ignore[attr-defined]  # simple-history reads this attribute
        locked.save(update_fields=["voided_at", "voided_by", "void_reason"])
        plan_sync([locked.patient_id])
    return locked


def void_record(record: MedicalRecord, *, reason: str, by: User | None) -> None:
    """Void one booklet entry through its service (which audits and re-plans)."""
    from patients import services

    if not reason.strip():
        raise ValidationError({"void_with_reason": _("Give the reason for voiding this entry.")})
    voiders: dict[type[MedicalRecord], Callable[[], Any]] = {
        DoseRecord: lambda: services.dose_void(dose=record, reason=reason, by=by),  # type: ignore[arg-type]
        TreatmentCourse: lambda: services.course_void(course=record, reason=reason, by=by),  # type: ignore[arg-type]
        LabResult: lambda: services.lab_void(lab=record, reason=reason, by=by),  # type: ignore[arg-type]
        DentalEvent: lambda: services.dental_event_void(dental=record, reason=reason, by=by),  # type: ignore[arg-type]
        Comedication: lambda: _comedication_void(comedication=record, reason=reason, by=by),  # type: ignore[arg-type]
    }
    voiders[type(record)]()
    record.refresh_from_db()


class VoidActionForm(ActionForm):
    reason = forms.CharField(label=_("Reason (for voiding)"), required=False, max_length=500)


@admin.action(description=_("Void selected entries (give a reason)"))
def void_selected(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]) -> None:
    from backend.errors import CarnetError

    reason = (request.POST.get("reason") or "").strip()
    if not reason:
        modeladmin.message_user(request, _("Give the reason for voiding."), messages.ERROR)
        return
    voided = 0
    for record in queryset.filter(voided_at__isnull=True).select_related("patient"):
        if not modeladmin.has_change_permission(request, record):
            raise PermissionDenied
        try:
            void_record(record, reason=reason, by=request.user)  # type: ignore[arg-type]
        except (CarnetError, ValidationError) as exc:
            modeladmin.message_user(request, f"{record}: {getattr(exc, 'message', exc)}", messages.ERROR)
        else:
            voided += 1
    modeladmin.message_user(request, _("%(n)d entries voided.") % {"n": voided}, messages.SUCCESS)


class MedicalRecordForm(forms.ModelForm):  # type: ignore[type-arg]  # one form for every booklet model
    """A booklet row: read-only once voided; a reason typed in ``void_with_reason`` voids it."""

    void_with_reason = forms.CharField(
        label=_("Void with reason"),
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"size": 18, "placeholder": _("reason, to void")}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None or self.instance.voided_at is not None:
            # Nothing to void on a new row; a voided row is read-only (disabled fields ignore posted data).
            self.fields["void_with_reason"].disabled = True
        if self.instance.voided_at is not None:
            for field in self.fields.values():
                field.disabled = True
        if "unit_entered" in self.fields:
            units = sorted({u for spec in LAB_TESTS.values() for u in spec.factors})
            current = self.initial.get("unit_entered")
            if current and current not in units:
                units.append(current)
            self.fields["unit_entered"] = forms.ChoiceField(
                label=self.fields["unit_entered"].label,
                choices=[("", "---------")] + [(u, u) for u in units],
                disabled=self.fields["unit_entered"].disabled,
            )

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if not (cleaned.get("void_with_reason") or "").strip():
            return cleaned
        if set(self.changed_data) - {"void_with_reason"}:
            raise ValidationError(_("Void an entry or correct it, not both at once."))
        if isinstance(self.instance, TreatmentCourse) and self.instance.doses.filter(voided_at__isnull=True).exists():
            # The same rule as patients.services.course_void, said here so the nurse sees it on the form.
            self.add_error("void_with_reason", _("Void this course's doses first."))
        return cleaned


class DoseRecordForm(MedicalRecordForm):
    """A new dose passes the same administration gates as ``patients.services.dose_record``."""

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # ModelForm's model-validation hook, not in django-stubs
        dose = self.instance
        if dose.pk is not None or self.errors or dose.course_id is None or dose.source == DoseRecord.Source.HISTORY:
            return
        from backend.errors import CarnetError
        from scheduling.services import dose_gates_check

        try:
            dose.override_flags = dose_gates_check(
                patient=dose.patient,
                course=dose.course,
                on=dose.given_on,
                override_reason=(dose.override_reason or "").strip(),
            )
        except CarnetError as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, exc.message)


def _save_record(request: HttpRequest, form: forms.ModelForm, obj: MedicalRecord) -> bool:  # type: ignore[type-arg]
    """Save or void one row from an admin form; True if it was voided."""
    reason = (form.cleaned_data.get("void_with_reason") or "").strip()
    if reason and obj.pk is not None:
        void_record(obj, reason=reason, by=request.user)  # type: ignore[arg-type]
        return True
    if obj.pk is None and obj.recorded_by_id is None:
        obj.recorded_by = request.user  # type: ignore[assignment]
    obj._history_user = request.user  # type: ignore[attr-defined]  # simple-history reads this attribute
    obj.save()
    return False


def _void_status(obj: MedicalRecord) -> str:
    if obj is None or obj.pk is None or obj.voided_at is None:
        return ""
    when = timezone.localtime(obj.voided_at).strftime("%d/%m/%Y %H:%M")
    return f"VOIDED {when} by {obj.voided_by or '?'}: {obj.void_reason}"


# --- inlines on the patient -----------------------------------------------------------------


class MedicalRecordInline(admin.TabularInline):  # type: ignore[type-arg]  # shared by the booklet inlines
    form = MedicalRecordForm
    extra = 0
    can_delete = False
    show_change_link = True
    readonly_fields: ClassVar[tuple[str, ...]] = ("status",)

    @admin.display(description=_("status"))
    def status(self, obj: MedicalRecord) -> str:
        return _void_status(obj) or ("—" if obj is None or obj.pk is None else str(_("valid")))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_care_staff(request) and _in_scope(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_care_staff(request) and _in_scope(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_care_staff(request) and _in_scope(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        request._carnet_parent_patient = obj  # type: ignore[attr-defined]  # read by formfield_for_foreignkey
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is User:
            kwargs["queryset"] = _staff_users(request)
        elif db_field.related_model is TreatmentCourse:
            parent = getattr(request, "_carnet_parent_patient", None)
            kwargs["queryset"] = (
                TreatmentCourse.objects.filter(patient=parent, voided_at__isnull=True)
                if parent is not None
                else TreatmentCourse.objects.none()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class TreatmentCourseInline(MedicalRecordInline):
    model = TreatmentCourse
    fields = (
        "protocol",
        "indication",
        "start_date",
        "planned_duration_months",
        "stop_date",
        "stop_reason",
        "consolidation",
        "response",
        "prescriber",
        "status",
        "void_with_reason",
    )


class DoseRecordInline(MedicalRecordInline):
    model = DoseRecord
    form = DoseRecordForm
    fields = (
        "given_at",
        "given_on",
        "course",
        "product",
        "dose_value",
        "dose_unit",
        "route",
        "injection_site",
        "lot_number",
        "source",
        "given_by",
        "override_reason",
        "override_flags",
        "status",
        "void_with_reason",
    )
    readonly_fields = ("given_on", "override_flags", "status")


class LabResultInline(MedicalRecordInline):
    model = LabResult
    fields = (
        "drawn_at",
        "drawn_on",
        "test",
        "value_entered",
        "unit_entered",
        "value",
        "unit",
        "albumin_g_l",
        "corrected_calcium_mmol_l",
        "reference_low",
        "reference_high",
        "status",
        "void_with_reason",
    )
    readonly_fields = ("drawn_on", "value", "unit", "corrected_calcium_mmol_l", "status")


class DentalEventInline(MedicalRecordInline):
    model = DentalEvent
    fields = ("date", "event", "dentist", "notes", "status", "void_with_reason")


class ComedicationInline(MedicalRecordInline):
    model = Comedication
    fields = ("name", "drug_class", "mg_per_day", "start_date", "stop_date", "status", "void_with_reason")


AUDIT_SKIP = frozenset({"id", "updated_at"})


def audit_delta(newer: Any, older: Any, *, foreign_keys_are_objs: bool = False) -> Any:
    """What changed between two history rows, non-editable columns (the void, ``given_on``) included.

    simple-history's ``diff_against`` only sees editable fields (it goes through ``model_to_dict``),
    so a void alone would show as a change of nothing.
    """
    from simple_history.models import ModelChange, ModelDelta

    delta = newer.diff_against(older, foreign_keys_are_objs=foreign_keys_are_objs)
    extra = [
        ModelChange(f.name, getattr(older, f.attname), getattr(newer, f.attname))
        for f in newer.tracked_fields
        if not f.editable and f.name not in AUDIT_SKIP and getattr(older, f.attname) != getattr(newer, f.attname)
    ]
    if not extra:
        return delta
    return ModelDelta(
        changes=[*delta.changes, *extra],
        changed_fields=[*delta.changed_fields, *(c.field for c in extra)],
        old_record=delta.old_record,
        new_record=delta.new_record,
    )


class AuditedAdminMixin:
    """History pages that show every tracked change, voids included; no revert."""

    def set_history_delta_changes(
        self, request: HttpRequest, historical_records: Any, foreign_keys_are_objs: bool = True
    ) -> None:
        previous = None
        for current in historical_records:  # newest first
            if previous is not None:
                delta = audit_delta(previous, current, foreign_keys_are_objs=foreign_keys_are_objs)
                helper = self.get_historical_record_context_helper(request, previous)  # type: ignore[attr-defined]
                previous.history_delta_changes = helper.context_for_delta_changes(delta)
            previous = current

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> HttpResponse:
        if request.method == "POST":
            raise PermissionDenied  # no revert: it could rewrite a voided entry; corrections are new edits
        return super().history_form_view(request, object_id, version_id, extra_context)  # type: ignore[misc,no-any-return]

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        return True


# --- patients -------------------------------------------------------------------------------

DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y")


def parse_birth_date(term: str) -> date | None:
    """A search term that is a date, as a nurse types it (12/04/1958) or ISO (1958-04-12)."""
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(term, fmt).date()
        except ValueError:
            continue
    return None


class CareTeamFilter(admin.SimpleListFilter):
    title = _("care team")
    parameter_name = "care_team"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        teams = CareTeam.objects.all()
        if not request.user.is_superuser:
            teams = teams.filter(pk__in=team_ids(request))
        return [(str(t.pk), t.name) for t in teams]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(care_team_id=value) if value and value.isdigit() else queryset


class ProtocolFilter(admin.SimpleListFilter):
    """Patients with a (non-voided) course of that protocol; "active" restricts to running courses."""

    title = _("protocol")
    parameter_name = "protocol"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(p.value, str(p.label)) for p in Protocol]
        return choices + [(f"{p.value}:active", f"{p.label} — {_('active')}") for p in Protocol]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        protocol, _sep, active = value.partition(":")
        courses = TreatmentCourse.objects.filter(patient=OuterRef("pk"), protocol=protocol, voided_at__isnull=True)
        if active:
            courses = courses.filter(stop_date__isnull=True)
        return queryset.filter(Exists(courses))


@admin.register(Patient)
class PatientAdmin(AuditedAdminMixin, ScopedAdminMixin, SimpleHistoryAdmin):  # type: ignore[misc]  # untyped base
    list_display = ("last_name", "first_name", "birth", "sex", "care_team", "protocols")
    list_display_links = ("last_name", "first_name")
    list_filter = (CareTeamFilter, ProtocolFilter, "sex")
    list_select_related = ("care_team",)
    search_fields = ("last_name", "first_name", "email")
    search_help_text = _("Name, email, or birth date (12/04/1958 or 1958-04-12).")
    show_full_result_count = False
    list_per_page = 50
    inlines = (TreatmentCourseInline, DoseRecordInline, LabResultInline, DentalEventInline, ComedicationInline)
    readonly_fields = ("public_id", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("care_team", ("last_name", "first_name"), ("birth_date", "sex"), "user")}),
        (
            _("Reminders"),
            {
                "fields": (
                    ("language", "timezone"),
                    ("email", "phone"),
                    ("consent_email", "consent_push", "consent_sms"),
                )
            },
        ),
        (_("Clinical"), {"fields": (("weight_kg", "dialysis"), "risk_factors", "predispositions")}),
        (_("Record"), {"classes": ("collapse",), "fields": ("public_id", "created_at", "updated_at")}),
    )
    raw_id_fields = ("user",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                models.Prefetch("courses", queryset=TreatmentCourse.objects.filter(voided_at__isnull=True))
            )
        )

    @admin.display(description=_("birth date"), ordering="birth_date")
    def birth(self, obj: Patient) -> str:
        return obj.birth_date.strftime("%d/%m/%Y")

    @admin.display(description=_("protocols"))
    def protocols(self, obj: Patient) -> str:
        names = [f"{c.protocol}{'' if c.stop_date is None else ' (stopped)'}" for c in obj.courses.all()]
        return ", ".join(names) or "—"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += ("user",)  # linking a login to a patient is an account decision
        return readonly

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "care_team" and not request.user.is_superuser:
            kwargs["queryset"] = CareTeam.objects.filter(pk__in=team_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Terms that are dates match the birth date; the other terms match names and email."""
        words = search_term.split()
        dates = [d for d in (parse_birth_date(w) for w in words) if d is not None]
        if not dates:
            return super().get_search_results(request, queryset, search_term)  # type: ignore[no-any-return]
        others = " ".join(w for w in words if parse_birth_date(w) is None)
        queryset = queryset.filter(birth_date__in=dates)
        if not others:
            return queryset, False
        return super().get_search_results(request, queryset, others)  # type: ignore[no-any-return]

    def save_model(self, request: HttpRequest, obj: Patient, form: Any, change: bool) -> None:
        obj._history_user = request.user  # type: ignore[attr-defined]  # simple-history reads this attribute
        obj.save()

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        formset.save(commit=False)
        for row in formset.forms:
            if not row.has_changed() or row in formset.deleted_forms:
                continue
            _save_record(request, row, row.instance)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        plan_sync([form.instance.pk])


# --- the booklet models, one by one ----------------------------------------------------------


class MedicalRecordAdmin(AuditedAdminMixin, ScopedAdminMixin, SimpleHistoryAdmin):  # type: ignore[misc]  # untyped base
    team_path = "patient__care_team"
    form = MedicalRecordForm
    action_form = VoidActionForm
    actions = (void_selected,)
    list_select_related: ClassVar[tuple[str, ...]] = ("patient",)
    show_full_result_count = False
    autocomplete_fields: ClassVar[tuple[str, ...]] = ("patient",)
    search_fields: ClassVar[tuple[str, ...]] = ("patient__last_name", "patient__first_name")
    readonly_fields: ClassVar[tuple[str, ...]] = ()
    common_readonly: ClassVar[tuple[str, ...]] = (
        "status",
        "recorded_by",
        "recorded_at",
        "voided_at",
        "voided_by",
        "void_reason",
        "public_id",
    )

    @admin.display(description=_("status"))
    def status(self, obj: MedicalRecord) -> str:
        return _void_status(obj) or str(_("valid"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj)) + self.common_readonly
        return (*readonly, "patient") if obj is not None else readonly  # an entry never moves to another patient

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("recorded_by",)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        request._carnet_parent_patient = obj.patient if obj is not None else None  # type: ignore[attr-defined]
        return super().get_form(request, obj, change, **kwargs)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is User:
            kwargs["queryset"] = _staff_users(request)
        elif db_field.related_model is TreatmentCourse:
            parent = getattr(request, "_carnet_parent_patient", None)
            courses = TreatmentCourse.objects.filter(voided_at__isnull=True)
            if parent is not None:
                courses = courses.filter(patient=parent)
            elif not request.user.is_superuser:
                courses = courses.filter(patient__care_team__in=team_ids(request))
            kwargs["queryset"] = courses.select_related("patient")
        elif db_field.related_model is Patient and not request.user.is_superuser:
            kwargs["queryset"] = Patient.objects.filter(care_team__in=team_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not _save_record(request, form, obj):
            plan_sync([obj.patient_id])


@admin.register(TreatmentCourse)
class TreatmentCourseAdmin(MedicalRecordAdmin):
    list_display = ("patient", "protocol", "start_date", "stop_date", "status")
    list_filter = ("protocol", "indication", ("stop_date", admin.EmptyFieldListFilter))
    search_fields = ("patient__last_name", "patient__first_name", "protocol")
    date_hierarchy = "start_date"


@admin.register(DoseRecord)
class DoseRecordAdmin(MedicalRecordAdmin):
    list_display = ("patient", "product", "dose_value", "dose_unit", "given_on", "source", "lot_number", "status")
    list_filter = ("product", "source", ("voided_at", admin.EmptyFieldListFilter))
    search_fields = ("patient__last_name", "patient__first_name", "lot_number")
    date_hierarchy = "given_on"
    autocomplete_fields = ("patient", "course")
    form = DoseRecordForm
    readonly_fields = ("given_on", "override_flags")


@admin.register(LabResult)
class LabResultAdmin(MedicalRecordAdmin):
    list_display = ("patient", "test", "value", "unit", "corrected_calcium_mmol_l", "drawn_on", "status")
    list_filter = ("test", ("voided_at", admin.EmptyFieldListFilter))
    date_hierarchy = "drawn_on"
    readonly_fields = ("value", "unit", "corrected_calcium_mmol_l", "drawn_on")


@admin.register(DentalEvent)
class DentalEventAdmin(MedicalRecordAdmin):
    list_display = ("patient", "event", "date", "dentist", "status")
    list_filter = ("event",)
    date_hierarchy = "date"


@admin.register(Comedication)
class ComedicationAdmin(MedicalRecordAdmin):
    list_display = ("patient", "name", "drug_class", "mg_per_day", "start_date", "stop_date", "status")
    list_filter = ("drug_class",)


# --- people and teams ------------------------------------------------------------------------


class CarnetUserCreationForm(AdminUserCreationForm):  # type: ignore[type-arg]  # django-stubs generic
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("email", "role")


class CarnetUserChangeForm(UserChangeForm):  # type: ignore[type-arg]  # django-stubs generic
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"


class MembershipOfUserInline(admin.TabularInline):  # type: ignore[type-arg]
    model = StaffMembership
    fk_name = "user"
    extra = 0
    fields = ("care_team", "role")


@admin.register(User)
class CarnetUserAdmin(DjangoUserAdmin):  # type: ignore[type-arg]  # django-stubs generic
    """Email login. Superusers manage accounts; a care-team admin can look at their team's accounts."""

    form = CarnetUserChangeForm
    add_form = CarnetUserCreationForm
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "role", "is_staff", "is_active")
    list_filter = ("role", "is_staff", "is_superuser", "is_active")
    search_fields = ("email", "first_name", "last_name")
    readonly_fields = ("public_id", "last_login", "date_joined")
    inlines = (MembershipOfUserInline,)
    fieldsets = (
        (None, {"fields": ("email", "password", "public_id")}),
        (_("Person"), {"fields": ("first_name", "last_name", "language")}),
        (
            _("Role and access"),
            {"fields": ("role", "is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "role", "usable_password", "password1", "password2")}),
    )

    def _is_team_admin(self, request: HttpRequest) -> bool:
        return _is_care_staff(request) and getattr(request.user, "role", None) == Role.TEAM_ADMIN

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        if not self._is_team_admin(request):
            return qs.none()
        teams = team_ids(request)
        scoped: QuerySet[User] = qs.filter(
            Q(memberships__care_team__in=teams) | Q(patient__care_team__in=teams)
        ).distinct()
        return scoped

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser) or self._is_team_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return True
        return self._is_team_admin(request) and (obj is None or self.get_queryset(request).filter(pk=obj.pk).exists())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = StaffMembership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    raw_id_fields = ("user",)

    def _can_manage(self, request: HttpRequest, obj: Any) -> bool:
        if request.user.is_superuser:
            return True
        return (
            _is_care_staff(request)
            and getattr(request.user, "role", None) == Role.TEAM_ADMIN
            and _in_scope(request, obj)
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_care_staff(request) and _in_scope(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._can_manage(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._can_manage(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._can_manage(request, obj)


@admin.register(CareTeam)
class CareTeamAdmin(ScopedAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Every care staff member sees their teams; a care-team admin edits them and their staff."""

    team_path = "pk"
    list_display = ("name", "kind", "timezone", "staff_count", "patient_count")
    search_fields = ("name",)
    inlines = (MembershipInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs: QuerySet[Any] = super().get_queryset(request)
        annotated: QuerySet[Any] = qs.annotate(n_staff=models.Count("memberships", distinct=True))
        return annotated

    @admin.display(description=_("staff"), ordering="n_staff")
    def staff_count(self, obj: Any) -> int:
        return int(obj.n_staff)

    @admin.display(description=_("patients"))
    def patient_count(self, obj: CareTeam) -> int:
        return obj.patients.count()

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return True
        return (
            _is_care_staff(request)
            and getattr(request.user, "role", None) == Role.TEAM_ADMIN
            and _in_scope(request, obj)
        )
