"""Forms of the nurse pages: they parse and label the input; the services validate and write.

Field names follow the services' argument names, so a service error (``CarnetError.field``,
``BookletValidationError.errors``) lands on the field the nurse typed into.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time, timedelta
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from backend.errors import CarnetError
from patients.models import DentalEvent, InjectionSite, LabResult, Product, Protocol, TreatmentCourse, User
from patients.units import LAB_TESTS

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
SLOT_MINUTES = 30
DAY_START = time(8, 0)
DAY_END = time(18, 0)


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%d", **kwargs)


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format=DATETIME_LOCAL, **kwargs)


def apply_error(form: forms.Form, exc: CarnetError, aliases: dict[str, str] | None = None) -> None:
    """Put a service error on the form field it names (or on the form when it names none).

    The services speak English; a message that is in this app's catalogue is shown translated.
    """
    errors: dict[str, list[str]] = getattr(exc, "errors", None) or {exc.field or "__all__": [exc.message]}
    for field, messages in errors.items():
        name = (aliases or {}).get(field, field)
        target = name if name in form.fields else None
        for message in messages:
            form.add_error(target, gettext(str(message)))


class LoginForm(AuthenticationForm):
    username = forms.EmailField(
        label=_("Email"), widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )


class TeamForm(forms.Form):
    team = forms.TypedChoiceField(label=_("Care team"), coerce=int)

    def __init__(self, *args: Any, teams: Iterable[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [(t.pk, t.name) for t in teams]  # type: ignore[attr-defined]


def slot_times() -> list[time]:
    out, minutes = [], DAY_START.hour * 60 + DAY_START.minute
    while minutes < DAY_END.hour * 60 + DAY_END.minute:
        out.append(time(minutes // 60, minutes % 60))
        minutes += SLOT_MINUTES
    return out


class SlotForm(forms.Form):
    """A day and a slot on it; outside the due window, a reason (the service enforces it)."""

    day = forms.DateField(label=_("Day"), widget=DateInput())
    slot = forms.TimeField(label=_("Time"), input_formats=["%H:%M"])
    duration = forms.TypedChoiceField(
        label=_("Length"),
        coerce=int,
        initial=30,
        choices=[(15, _("15 minutes")), (30, _("30 minutes")), (45, _("45 minutes")), (60, _("1 hour"))],
    )
    out_of_window_reason = forms.CharField(
        label=_("Reason for a day outside the due window"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Required only when the day is outside the window."),
    )

    @property
    def length(self) -> timedelta:
        return timedelta(minutes=int(self.cleaned_data["duration"]))


class PersonChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]  # django-stubs generic
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.get_full_name() or obj.email)


class CourseChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]  # django-stubs generic
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.get_protocol_display()} ({obj.start_date:%d/%m/%Y})"


class BookForm(SlotForm):
    nurse = PersonChoiceField(label=_("Nurse"), queryset=User.objects.none())

    field_order = ("day", "nurse", "slot", "duration", "out_of_window_reason")

    def __init__(self, *args: Any, nurses: list[User], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["nurse"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = User.objects.filter(pk__in=[n.pk for n in nurses])


class CancelForm(forms.Form):
    reason = forms.CharField(label=_("Reason for cancelling"), max_length=100)


class VoidForm(forms.Form):
    reason = forms.CharField(label=_("Reason for voiding"), max_length=500, widget=forms.Textarea(attrs={"rows": 2}))


class OutcomeForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[("called", _("Called")), ("rescheduled", _("Rescheduled")), ("given", _("Given"))]
    )
    note = forms.CharField(required=False, max_length=300)


class DoseForm(forms.Form):
    course = CourseChoiceField(
        label=_("Treatment course"),
        queryset=TreatmentCourse.objects.none(),
        required=False,
        empty_label=_("— none (vitamin D, history) —"),
    )
    product = forms.ChoiceField(label=_("Product"), choices=Product.choices)
    dose_value = forms.DecimalField(label=_("Dose"), max_digits=8, decimal_places=1, min_value=0)
    lot_number = forms.CharField(label=_("Lot number"), max_length=40, required=False)
    injection_site = forms.ChoiceField(
        label=_("Injection site"), choices=[("", "—"), *InjectionSite.choices], required=False
    )
    given_at = forms.DateTimeField(label=_("Given at"), widget=DateTimeLocalInput(), input_formats=[DATETIME_LOCAL])
    override_reason = forms.CharField(
        label=_("Emergency override reason"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Only when a block must be lifted in an emergency."),
    )

    def __init__(self, *args: Any, courses: Iterable[TreatmentCourse], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["course"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = TreatmentCourse.objects.filter(pk__in=[c.pk for c in courses])


def lab_unit_choices() -> list[tuple[str, str]]:
    units: dict[str, None] = {}
    for spec in LAB_TESTS.values():
        for unit in spec.factors:
            units.setdefault(unit, None)
    return [(u, u) for u in units]


class LabForm(forms.Form):
    test = forms.ChoiceField(label=_("Test"), choices=LabResult.Test.choices)
    value = forms.DecimalField(label=_("Value"), max_digits=10, decimal_places=3)
    unit = forms.ChoiceField(label=_("Unit"), choices=lab_unit_choices)
    drawn_at = forms.DateTimeField(label=_("Drawn at"), widget=DateTimeLocalInput(), input_formats=[DATETIME_LOCAL])
    albumin_g_l = forms.DecimalField(
        label=_("Albumin, same draw (g/L)"),
        required=False,
        max_digits=5,
        decimal_places=1,
        help_text=_("Total calcium only: corrects it (CA-01)."),
    )
    reference_low = forms.DecimalField(label=_("Lab's lower limit"), required=False, max_digits=10, decimal_places=3)
    reference_high = forms.DecimalField(label=_("Lab's upper limit"), required=False, max_digits=10, decimal_places=3)


class DentalForm(forms.Form):
    event = forms.ChoiceField(label=_("Event"), choices=DentalEvent.Event.choices)
    on = forms.DateField(label=_("Date"), widget=DateInput())
    dentist = forms.CharField(label=_("Dentist"), max_length=200, required=False)
    notes = forms.CharField(label=_("Notes"), required=False, widget=forms.Textarea(attrs={"rows": 2}))


class CourseStartForm(forms.Form):
    protocol = forms.ChoiceField(label=_("Protocol"), choices=Protocol.choices)
    start_date = forms.DateField(label=_("Start date"), widget=DateInput())
    planned_duration_months = forms.IntegerField(
        label=_("Planned duration (months)"), required=False, min_value=1, max_value=240
    )
    response = forms.ChoiceField(
        label=_("Oncological response"),
        required=False,
        choices=[("", "—"), *TreatmentCourse.Response.choices],
        help_text=_("Zoledronic acid 4 mg only (ZOL-04)."),
    )


class CourseStopForm(forms.Form):
    stop_date = forms.DateField(label=_("Stop date"), widget=DateInput())
    reason = forms.CharField(label=_("Reason for stopping"), max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
    consolidation = forms.ChoiceField(
        label=_("Consolidation"),
        required=False,
        choices=[
            ("", "—"),
            (Protocol.ZOLEDRONIC_OP.value, Protocol.ZOLEDRONIC_OP.label),
            (Protocol.ALENDRONATE_OP.value, Protocol.ALENDRONATE_OP.label),
        ],
        help_text=_("Denosumab 60 mg: zoledronic acid 5 mg unless you choose alendronate (CONS-01, CONS-03)."),
    )
