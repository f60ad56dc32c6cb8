"""People and the booklet: patients, care teams, staff, courses, doses, labs, dental events.

Medical records are never deleted: a wrong entry is voided with a reason (``void``), and every
create, update and void is kept by django-simple-history (who, when, what changed).
Validation lives in ``clean()`` so the admin, the API and the services share it; the services
(``patients.services``) are the only writers and call ``full_clean()`` inside a transaction.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from patients.units import LAB_TESTS


def validate_timezone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(_("Unknown time zone %(tz)s."), params={"tz": value}) from exc


TIMEZONE_CHOICES = sorted((tz, tz) for tz in available_timezones() if "/" in tz)


class Language(models.TextChoices):
    FR = "fr", "Français"
    EN = "en", "English"


class Role(models.TextChoices):
    PATIENT = "patient", _("Patient")
    NURSE = "nurse", _("Nurse")
    PHYSICIAN = "physician", _("Physician")
    TEAM_ADMIN = "team_admin", _("Care-team admin")


STAFF_ROLES = (Role.NURSE, Role.PHYSICIAN, Role.TEAM_ADMIN)


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("email: required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("role", Role.TEAM_ADMIN)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """Anyone who logs in: a patient, a nurse, a physician or a care-team admin (email login)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField(_("email"), unique=True)
    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    last_name = models.CharField(_("last name"), max_length=150, blank=True)
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.PATIENT)
    language = models.CharField(_("language"), max_length=2, choices=Language.choices, default=Language.FR)
    is_staff = models.BooleanField(_("admin access"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = _("user")

    def __str__(self) -> str:
        return self.get_full_name() or self.email

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def get_short_name(self) -> str:
        return self.first_name or self.email

    @property
    def is_care_staff(self) -> bool:
        return self.role in STAFF_ROLES


class CareTeam(models.Model):
    """A clinic or a hospital service; it owns its patients and has staff."""

    class Kind(models.TextChoices):
        CLINIC = "clinic", _("Clinic")
        HOSPITAL_SERVICE = "hospital_service", _("Hospital service")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=200, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.CLINIC)
    timezone = models.CharField(_("time zone"), max_length=64, default="Europe/Paris", validators=[validate_timezone])
    staff = models.ManyToManyField(User, through="StaffMembership", related_name="care_teams")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("care team")
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class StaffMembership(models.Model):
    """A staff member in a care team; staff may belong to several teams."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    care_team = models.ForeignKey(CareTeam, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=16, choices=[(r.value, r.label) for r in STAFF_ROLES])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("staff membership")
        constraints = [
            models.UniqueConstraint(fields=["user", "care_team"], name="uniq_membership_user_team"),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.care_team} ({self.role})"


class Sex(models.TextChoices):
    FEMALE = "F", _("Female")
    MALE = "M", _("Male")


class RiskFactor(models.TextChoices):
    """Exposures the rules read (RISK-01, ONJ-02); codes are scheduling.rules.facts.RISK_FACTORS."""

    TOBACCO = "tobacco", _("Tobacco")
    ALCOHOL = "alcohol", _("Alcohol")
    HEAD_NECK_RADIOTHERAPY = "head_neck_radiotherapy", _("Head and neck radiotherapy")
    CRANIOFACIAL_IRRADIATION = "craniofacial_irradiation", _("Craniofacial irradiation")


class Predisposition(models.TextChoices):
    """Predispositions to hypocalcaemia (CA-RISK-01); codes are scheduling.rules.facts.PREDISPOSITIONS."""

    HYPOPARATHYROIDISM = "hypoparathyroidism", _("Hypoparathyroidism")
    THYROID_SURGERY = "thyroid_surgery", _("Thyroid surgery")
    PARATHYROID_SURGERY = "parathyroid_surgery", _("Parathyroid surgery")
    MALABSORPTION = "malabsorption", _("Malabsorption")
    SMALL_BOWEL_EXCISION = "small_bowel_excision", _("Small-bowel excision")
    CALCIUM_LOWERING_DRUG = "calcium_lowering_drug", _("Other calcium-lowering drug")


@deconstructible
class CodeListValidator:
    """A JSON list of codes, each one of ``choices`` (named by the class's dotted path)."""

    def __init__(self, choices_path: str, label: str) -> None:
        self.choices_path = choices_path
        self.label = label

    def __call__(self, value: object) -> None:
        choices = import_string(self.choices_path)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError(_("Give a list of codes."))
        unknown = sorted(set(value) - set(choices.values))
        if unknown:
            raise ValidationError(
                _("Unknown %(label)s: %(codes)s."), params={"label": self.label, "codes": ", ".join(unknown)}
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CodeListValidator) and (self.choices_path, self.label) == (
            other.choices_path,
            other.label,
        )

    def __hash__(self) -> int:
        return hash((self.choices_path, self.label))


validate_risk_factors = CodeListValidator("patients.models.RiskFactor", "risk factors")
validate_predispositions = CodeListValidator("patients.models.Predisposition", "predispositions")


class Patient(models.Model):
    """A patient of one care team, with the preferences that shape their reminders."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.OneToOneField(User, on_delete=models.PROTECT, null=True, blank=True, related_name="patient")
    care_team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="patients")
    first_name = models.CharField(_("first name"), max_length=150)
    last_name = models.CharField(_("last name"), max_length=150)
    birth_date = models.DateField(_("birth date"))
    sex = models.CharField(_("sex"), max_length=1, choices=Sex.choices)
    language = models.CharField(_("language"), max_length=2, choices=Language.choices, default=Language.FR)
    timezone = models.CharField(_("time zone"), max_length=64, default="Europe/Paris", validators=[validate_timezone])
    email = models.EmailField(_("email"), blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    consent_email = models.BooleanField(_("email reminders"), default=False)
    consent_push = models.BooleanField(_("push reminders"), default=False)
    consent_sms = models.BooleanField(_("SMS reminders"), default=False)
    weight_kg = models.DecimalField(_("weight (kg)"), max_digits=5, decimal_places=1, null=True, blank=True)
    dialysis = models.BooleanField(_("on dialysis"), default=False)
    risk_factors = models.JSONField(_("risk factors"), default=list, blank=True, validators=[validate_risk_factors])
    predispositions = models.JSONField(
        _("predispositions to hypocalcaemia"), default=list, blank=True, validators=[validate_predispositions]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("patient")
        ordering = ("last_name", "first_name")
        indexes = [
            models.Index(fields=["care_team", "last_name", "first_name"], name="patient_team_name_idx"),
            models.Index(fields=["birth_date"], name="patient_birth_date_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.last_name.upper()} {self.first_name} ({self.birth_date:%d/%m/%Y})"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_date(self, instant: datetime) -> date:
        """TIME-01: an instant becomes a calendar date in the patient's time zone."""
        return timezone.localtime(instant, self.tz).date()

    def clean(self) -> None:
        today = timezone.localdate(timezone=ZoneInfo(self.timezone or "Europe/Paris")) if self.timezone else None
        if self.birth_date and today and self.birth_date > today:
            raise ValidationError({"birth_date": _("The birth date cannot be in the future.")})
        if self.birth_date and today and (today.year - self.birth_date.year) > 120:
            raise ValidationError({"birth_date": _("A birth date more than 120 years ago is not plausible.")})
        if self.weight_kg is not None and not 20 <= self.weight_kg <= 300:
            raise ValidationError({"weight_kg": _("Weight must be between 20 and 300 kg.")})
        if self.consent_email and not self.email:
            raise ValidationError({"email": _("Email reminders need an email address.")})
        if self.consent_sms and not self.phone:
            raise ValidationError({"phone": _("SMS reminders need a phone number.")})


class Protocol(models.TextChoices):
    """Protocol ids from clinical-rules.md section 0."""

    DENOSUMAB_OP = "denosumab_op_60mg_q6m", _("Denosumab 60 mg every 6 months (osteoporosis)")
    DENOSUMAB_ONCO = "denosumab_onco_120mg", _("Denosumab 120 mg every 4 weeks (bone metastases)")
    ZOLEDRONIC_ONCO = "zoledronic_onco_4mg", _("Zoledronic acid 4 mg (bone metastases)")
    ZOLEDRONIC_OP = "zoledronic_op_5mg", _("Zoledronic acid 5 mg (consolidation)")
    ALENDRONATE_OP = "alendronate_op_70mg_weekly", _("Alendronate 70 mg weekly (consolidation)")
    VITAMIN_D = "vitamin_d_50000iu", _("Cholecalciferol 50,000 IU")


class Indication(models.TextChoices):
    OSTEOPOROSIS = "osteoporosis", _("Osteoporosis")
    ONCOLOGY = "oncology", _("Oncology (bone metastases)")


PROTOCOL_INDICATION = {
    Protocol.DENOSUMAB_OP: Indication.OSTEOPOROSIS,
    Protocol.DENOSUMAB_ONCO: Indication.ONCOLOGY,
    Protocol.ZOLEDRONIC_ONCO: Indication.ONCOLOGY,
    Protocol.ZOLEDRONIC_OP: Indication.OSTEOPOROSIS,
    Protocol.ALENDRONATE_OP: Indication.OSTEOPOROSIS,
}


# Clocks on phones and lab systems drift: a few minutes ahead is not "in the future".
FUTURE_TOLERANCE = timedelta(minutes=5)


_Record = TypeVar("_Record", bound=models.Model)


class MedicalRecordQuerySet(models.QuerySet[_Record]):
    def delete(self) -> tuple[int, dict[str, int]]:
        raise ValidationError(_("Medical records are voided with a reason, never deleted."))


class MedicalRecord(models.Model):
    """Common columns of a booklet entry: who recorded it, and its void (never a delete)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    recorded_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)
    voided_at = models.DateTimeField(null=True, blank=True, editable=False)
    voided_by = models.ForeignKey(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    void_reason = models.TextField(_("void reason"), blank=True, editable=False)

    objects = MedicalRecordQuerySet.as_manager()

    class Meta:
        abstract = True

    @property
    def is_voided(self) -> bool:
        return self.voided_at is not None

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValidationError(_("Medical records are voided with a reason, never deleted."))


class TreatmentCourse(MedicalRecord):
    """One protocol followed by one patient, from its start to its stop (with a reason)."""

    class Response(models.TextChoices):
        COMPLETE = "complete", _("Complete oncological response")
        GOOD = "good", _("Good oncological response")
        OLIGOMETASTATIC = "oligometastatic", _("Oligometastatic disease")
        PARTIAL = "partial", _("Partial response")
        STABLE = "stable", _("Stable disease")
        PROGRESSION = "progression", _("Progression")

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="courses")
    protocol = models.CharField(_("protocol"), max_length=40, choices=Protocol.choices)
    indication = models.CharField(_("indication"), max_length=20, choices=Indication.choices)
    start_date = models.DateField(_("start date"))
    planned_duration_months = models.PositiveSmallIntegerField(_("planned duration (months)"), null=True, blank=True)
    stop_date = models.DateField(_("stop date"), null=True, blank=True)
    stop_reason = models.TextField(_("stop reason"), blank=True)
    consolidation = models.CharField(
        _("consolidation chosen at stop"),
        max_length=40,
        blank=True,
        choices=[
            (Protocol.ZOLEDRONIC_OP.value, Protocol.ZOLEDRONIC_OP.label),
            (Protocol.ALENDRONATE_OP.value, Protocol.ALENDRONATE_OP.label),
        ],
    )
    response = models.CharField(_("oncological response"), max_length=20, blank=True, choices=Response.choices)
    prescriber = models.ForeignKey(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="prescribed_courses"
    )

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("treatment course")
        ordering = ("-start_date",)
        indexes = [models.Index(fields=["patient", "start_date"], name="course_patient_start_idx")]

    def __str__(self) -> str:
        return f"{self.get_protocol_display()} from {self.start_date:%d/%m/%Y}"

    @property
    def is_active(self) -> bool:
        return self.stop_date is None and self.voided_at is None

    def clean(self) -> None:
        errors: dict[str, str] = {}
        expected = PROTOCOL_INDICATION.get(Protocol(self.protocol)) if self.protocol in Protocol.values else None
        if expected and self.indication and self.indication != expected:
            errors["indication"] = str(_("This protocol is for %(ind)s.") % {"ind": expected.label})
        if self.start_date and not date(1990, 1, 1) <= self.start_date <= timezone.localdate() + timedelta(days=366):
            errors["start_date"] = str(_("The start date must be after 1990 and within a year from today."))
        if self.stop_date and self.start_date and self.stop_date < self.start_date:
            errors["stop_date"] = str(_("A course cannot stop before it starts."))
        if self.stop_date and not self.stop_reason.strip():
            errors["stop_reason"] = str(_("Give the reason for stopping."))
        if self.stop_date and self.stop_date > timezone.localdate():
            errors["stop_date"] = str(_("The stop date cannot be in the future."))
        if self.consolidation and self.protocol != Protocol.DENOSUMAB_OP:
            errors["consolidation"] = str(_("Consolidation applies to denosumab 60 mg only."))
        if self.response and self.protocol != Protocol.ZOLEDRONIC_ONCO:
            errors["response"] = str(_("A response changes the interval of zoledronic acid 4 mg only."))
        if errors:
            raise ValidationError(errors)


class Product(models.TextChoices):
    DENOSUMAB = "denosumab", _("Denosumab")
    ZOLEDRONIC_ACID = "zoledronic_acid", _("Zoledronic acid")
    ALENDRONATE = "alendronate", _("Alendronate")
    CHOLECALCIFEROL = "cholecalciferol", _("Cholecalciferol (vitamin D3)")


class Route(models.TextChoices):
    SC = "SC", _("Subcutaneous")
    IV = "IV", _("Intravenous")
    PO = "PO", _("Oral")


class DoseUnit(models.TextChoices):
    MG = "mg", "mg"
    IU = "IU", "IU"


# What each product may be recorded as: its unit, its route and the plausible doses.
PRODUCT_RULES: dict[str, dict[str, Any]] = {
    Product.DENOSUMAB: {"unit": DoseUnit.MG, "route": Route.SC, "doses": (60, 120)},
    Product.ZOLEDRONIC_ACID: {"unit": DoseUnit.MG, "route": Route.IV, "range": (3, 5)},
    Product.ALENDRONATE: {"unit": DoseUnit.MG, "route": Route.PO, "doses": (70,)},
    Product.CHOLECALCIFEROL: {"unit": DoseUnit.IU, "route": Route.PO, "range": (400, 100_000)},
}

PROTOCOL_PRODUCT = {
    Protocol.DENOSUMAB_OP: (Product.DENOSUMAB, (60,)),
    Protocol.DENOSUMAB_ONCO: (Product.DENOSUMAB, (120,)),
    Protocol.ZOLEDRONIC_ONCO: (Product.ZOLEDRONIC_ACID, None),
    Protocol.ZOLEDRONIC_OP: (Product.ZOLEDRONIC_ACID, (5,)),
    Protocol.ALENDRONATE_OP: (Product.ALENDRONATE, (70,)),
    Protocol.VITAMIN_D: (Product.CHOLECALCIFEROL, None),
}


class InjectionSite(models.TextChoices):
    ABDOMEN = "abdomen", _("Abdomen")
    THIGH_LEFT = "thigh_left", _("Left thigh")
    THIGH_RIGHT = "thigh_right", _("Right thigh")
    ARM_LEFT = "arm_left", _("Left upper arm")
    ARM_RIGHT = "arm_right", _("Right upper arm")
    IV_LEFT = "iv_left", _("Left arm (IV)")
    IV_RIGHT = "iv_right", _("Right arm (IV)")


class DoseRecord(MedicalRecord):
    """One administration in the booklet: the actual local date anchors the next due date (OP-01)."""

    class Source(models.TextChoices):
        STAFF = "staff", _("Given by staff")
        SELF_REPORTED = "self_reported", _("Self-reported by the patient")
        HISTORY = "history", _("Entered from history")

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="doses")
    course = models.ForeignKey(TreatmentCourse, on_delete=models.PROTECT, null=True, blank=True, related_name="doses")
    product = models.CharField(_("product"), max_length=20, choices=Product.choices)
    dose_value = models.DecimalField(_("dose"), max_digits=8, decimal_places=1)
    dose_unit = models.CharField(_("unit"), max_length=4, choices=DoseUnit.choices)
    route = models.CharField(_("route"), max_length=2, choices=Route.choices)
    given_at = models.DateTimeField(_("given at"))
    given_on = models.DateField(_("local date given"), editable=False)
    injection_site = models.CharField(_("injection site"), max_length=20, choices=InjectionSite.choices, blank=True)
    lot_number = models.CharField(_("lot number"), max_length=40, blank=True)
    source = models.CharField(_("source"), max_length=16, choices=Source.choices, default=Source.STAFF)
    given_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    override_reason = models.TextField(_("emergency override reason"), blank=True)
    override_flags = models.JSONField(_("flags overridden"), default=list, blank=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("dose record")
        ordering = ("-given_at",)
        indexes = [models.Index(fields=["patient", "given_on"], name="dose_patient_day_idx")]
        constraints = [
            # "A second identical dose entry on the same day is refused" — voided ones excepted.
            models.UniqueConstraint(
                fields=["patient", "product", "given_on"],
                condition=Q(voided_at__isnull=True),
                name="uniq_live_dose_patient_product_day",
                violation_error_message=_("This dose is already recorded for that day."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_product_display()} {self.dose_value} {self.dose_unit} on {self.given_on:%d/%m/%Y}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.given_at:
            if self.given_at > timezone.now() + FUTURE_TOLERANCE:
                errors["given_at"] = str(_("A dose cannot be dated in the future."))
            self.given_on = self.patient.local_date(self.given_at) if self.patient_id else self.given_at.date()
        rules = PRODUCT_RULES.get(self.product)
        if rules is not None:
            if self.dose_unit and self.dose_unit != rules["unit"]:
                errors["dose_unit"] = str(
                    _("%(product)s is dosed in %(unit)s.")
                    % {"product": self.get_product_display(), "unit": rules["unit"]}
                )
            if self.route and self.route != rules["route"]:
                errors["route"] = str(
                    _("%(product)s is given by the %(route)s route.")
                    % {"product": self.get_product_display(), "route": rules["route"]}
                )
            if self.dose_value is not None and "dose_unit" not in errors:
                if "doses" in rules and float(self.dose_value) not in rules["doses"]:
                    errors["dose_value"] = str(
                        _("Plausible doses of %(product)s: %(doses)s %(unit)s.")
                        % {
                            "product": self.get_product_display(),
                            "doses": ", ".join(str(d) for d in rules["doses"]),
                            "unit": rules["unit"],
                        }
                    )
                if "range" in rules and not rules["range"][0] <= float(self.dose_value) <= rules["range"][1]:
                    errors["dose_value"] = str(
                        _("A dose of %(product)s must be between %(lo)s and %(hi)s %(unit)s.")
                        % {
                            "product": self.get_product_display(),
                            "lo": rules["range"][0],
                            "hi": rules["range"][1],
                            "unit": rules["unit"],
                        }
                    )
        if self.course_id is not None and self.course is not None:
            course = self.course
            if course.patient_id != self.patient_id:
                errors["course"] = str(_("This course belongs to another patient."))
            expected_product, expected_doses = PROTOCOL_PRODUCT[Protocol(course.protocol)]
            if self.product and self.product != expected_product:
                errors["product"] = str(_("This course gives %(product)s.") % {"product": expected_product.label})
            elif (
                expected_doses
                and self.dose_value is not None
                and float(self.dose_value) not in expected_doses
                and "dose_value" not in errors
            ):
                errors["dose_value"] = str(
                    _("This course gives %(dose)s %(unit)s.") % {"dose": expected_doses[0], "unit": self.dose_unit}
                )
            if self.given_on and self.source != self.Source.HISTORY:
                if self.given_on < course.start_date:
                    errors["given_at"] = str(
                        _(
                            "This dose is dated before its course starts (%(start)s); "
                            "enter it as history if it is an earlier dose."
                        )
                        % {"start": course.start_date.isoformat()}
                    )
                if course.stop_date and self.given_on > course.stop_date:
                    errors["course"] = str(
                        _("This course was stopped on %(stop)s.") % {"stop": course.stop_date.isoformat()}
                    )
                if course.voided_at is not None:
                    errors["course"] = str(_("This course was voided."))
        elif self.product in (Product.DENOSUMAB, Product.ZOLEDRONIC_ACID) and self.source != self.Source.HISTORY:
            errors["course"] = str(_("An injection belongs to a treatment course."))
        if self.source == self.Source.STAFF and self.product in (Product.DENOSUMAB, Product.ZOLEDRONIC_ACID):
            if not self.lot_number.strip():
                errors["lot_number"] = str(_("The lot number is required for an injection given by staff."))
            if not self.injection_site:
                errors["injection_site"] = str(_("The injection site is required for an injection given by staff."))
        if errors:
            raise ValidationError(errors)


class LabResult(MedicalRecord):
    """One lab value, stored in its normalised unit with what was entered kept beside it."""

    class Test(models.TextChoices):
        CALCIUM_TOTAL = "calcium_total", _("Total calcium")
        ALBUMIN = "albumin", _("Albumin")
        CALCIUM_IONISED = "calcium_ionised", _("Ionised calcium")
        VITAMIN_D = "25ohd", _("25-OH vitamin D")
        CREATININE = "creatinine", _("Creatinine")
        EGFR = "egfr", _("eGFR (CKD-EPI)")
        CRCL = "crcl", _("Creatinine clearance")
        CTX = "ctx", _("CTX")
        PHOSPHATE = "phosphate", _("Phosphate")
        MAGNESIUM = "magnesium", _("Magnesium")
        PTH = "pth", _("Intact PTH")

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="labs")
    test = models.CharField(_("test"), max_length=20, choices=Test.choices)
    value_entered = models.DecimalField(_("value as entered"), max_digits=10, decimal_places=3)
    unit_entered = models.CharField(_("unit as entered"), max_length=20)
    value = models.DecimalField(_("value (normalised)"), max_digits=10, decimal_places=3, editable=False)
    unit = models.CharField(_("unit (normalised)"), max_length=20, editable=False)
    albumin_g_l = models.DecimalField(
        _("albumin, same draw (g/L)"), max_digits=5, decimal_places=1, null=True, blank=True
    )
    corrected_calcium_mmol_l = models.DecimalField(
        _("corrected calcium (mmol/L)"), max_digits=6, decimal_places=3, null=True, blank=True, editable=False
    )
    reference_low = models.DecimalField(_("lab's lower limit"), max_digits=10, decimal_places=3, null=True, blank=True)
    reference_high = models.DecimalField(_("lab's upper limit"), max_digits=10, decimal_places=3, null=True, blank=True)
    drawn_at = models.DateTimeField(_("drawn at"))
    drawn_on = models.DateField(_("local date drawn"), editable=False)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("lab result")
        ordering = ("-drawn_at",)
        indexes = [models.Index(fields=["patient", "test", "drawn_on"], name="lab_patient_test_day_idx")]

    def __str__(self) -> str:
        return f"{self.get_test_display()} {self.value} {self.unit} on {self.drawn_on:%d/%m/%Y}"

    def clean(self) -> None:
        from decimal import Decimal

        from patients.units import UnitError, corrected_calcium, normalise

        errors: dict[str, str] = {}
        if self.drawn_at:
            if self.drawn_at > timezone.now() + FUTURE_TOLERANCE:
                errors["drawn_at"] = str(_("A lab result cannot be dated in the future."))
            self.drawn_on = self.patient.local_date(self.drawn_at) if self.patient_id else self.drawn_at.date()
        if self.test and self.value_entered is not None and self.unit_entered:
            try:
                self.value = normalise(self.test, Decimal(self.value_entered), self.unit_entered, field="value_entered")
                self.unit = LAB_TESTS[self.test].unit
            except UnitError as exc:
                errors["unit_entered" if exc.field == "unit" else exc.field] = exc.message
        if self.albumin_g_l is not None:
            if self.test != self.Test.CALCIUM_TOTAL:
                errors["albumin_g_l"] = str(_("Albumin from the same draw corrects total calcium only."))
            else:
                try:
                    self.albumin_g_l = normalise("albumin", Decimal(self.albumin_g_l), "g/L", field="albumin_g_l")
                except UnitError as exc:
                    errors["albumin_g_l"] = exc.message
        if self.test == self.Test.CALCIUM_TOTAL and "value_entered" not in errors and self.value is not None:
            self.corrected_calcium_mmol_l = (
                corrected_calcium(Decimal(self.value), self.albumin_g_l) if "albumin_g_l" not in errors else None
            )
        else:
            self.corrected_calcium_mmol_l = None
        if (self.reference_low is None) != (self.reference_high is None):
            errors["reference_high"] = str(_("Give both limits of the lab's range, or neither."))
        elif (
            self.reference_low is not None
            and self.reference_high is not None
            and self.reference_low >= self.reference_high
        ):
            errors["reference_high"] = str(_("The upper limit must be above the lower limit."))
        if errors:
            raise ValidationError(errors)


class DentalEvent(MedicalRecord):
    """A dental step: exam, panoramic X-ray, extraction, clearance, or an ONJ finding (ONJ-01)."""

    class Event(models.TextChoices):
        EXAM = "exam", _("Dental examination")
        PANORAMIC_XRAY = "panoramic_xray", _("Panoramic X-ray (orthopantomogram)")
        EXTRACTION = "extraction", _("Extraction")
        CLEARANCE = "clearance", _("Dentist's clearance")
        EXPOSED_BONE = "exposed_bone", _("Exposed bone identified")
        ONJ_TREATMENT_START = "onj_treatment_start", _("ONJ treatment started")
        EXPOSED_BONE_PERSISTING = "exposed_bone_persisting", _("Exposed bone still present")

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="dental_events")
    event = models.CharField(_("event"), max_length=30, choices=Event.choices)
    date = models.DateField(_("date"))
    dentist = models.CharField(_("dentist"), max_length=200, blank=True)
    notes = models.TextField(_("notes"), blank=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("dental event")
        ordering = ("-date",)
        indexes = [models.Index(fields=["patient", "date"], name="dental_patient_date_idx")]

    def __str__(self) -> str:
        return f"{self.get_event_display()} on {self.date:%d/%m/%Y}"

    def clean(self) -> None:
        if self.date and self.patient_id and self.date > timezone.localdate(timezone=self.patient.tz):
            raise ValidationError({"date": _("A dental event cannot be dated in the future.")})


class Comedication(MedicalRecord):
    """A co-medication the rules read: glucocorticoids (RISK-02), antiangiogenics, biologics (BIO-01)."""

    class DrugClass(models.TextChoices):
        GLUCOCORTICOID = "glucocorticoid", _("Systemic glucocorticoid")
        ANTIANGIOGENIC = "antiangiogenic", _("Antiangiogenic (e.g. bevacizumab)")
        BIOLOGIC = "biologic", _("Biologic (e.g. belimumab)")
        IMMUNOSUPPRESSANT = "immunosuppressant", _("Immunosuppressant")
        CALCIUM_LOWERING = "calcium_lowering", _("Other calcium-lowering drug")
        OTHER = "other", _("Other")

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="comedications")
    name = models.CharField(_("name"), max_length=120)
    drug_class = models.CharField(_("class"), max_length=20, choices=DrugClass.choices)
    mg_per_day = models.DecimalField(
        _("mg per day (prednisone-equivalent for steroids)"), max_digits=7, decimal_places=2, null=True, blank=True
    )
    start_date = models.DateField(_("start date"))
    stop_date = models.DateField(_("stop date"), null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = _("co-medication")
        ordering = ("-start_date",)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.stop_date and self.start_date and self.stop_date < self.start_date:
            raise ValidationError({"stop_date": _("A co-medication cannot stop before it starts.")})
        if self.mg_per_day is not None and not 0 < self.mg_per_day <= 2000:
            raise ValidationError({"mg_per_day": _("The daily dose must be between 0 and 2000 mg.")})
