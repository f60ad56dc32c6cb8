"""Demo booklets: realistic patients across every protocol, built in memory for bulk inserts.

``story_build`` turns a seeded random generator into one patient's unsaved rows (patient,
courses, doses, labs, dental events, co-medications). The rows are what ``clean()`` would
produce: the local dates (``given_on``, ``drawn_on``) and the normalised lab values with the
CA-01 corrected calcium are computed here, because ``bulk_create`` skips ``clean()``.

Scenarios, mixed per patient: on-time, late and missed doses, a dose overdue today, low
calcium, vitamin D deficiency (with loading then maintenance, VITD-02/03), a recent dental
extraction (DENT-02/04), stopped courses and the consolidation that follows denosumab
(CONS-01/03), a voided duplicate entry. Every dose, lab and dental date is before today; only a
course about to start may carry a start date from today on.
"""

from __future__ import annotations

import calendar
import random
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from faker.providers.person.fr_FR import Provider as _FrenchNames

from patients.models import (
    CareTeam,
    Comedication,
    DentalEvent,
    DoseRecord,
    Indication,
    InjectionSite,
    LabResult,
    Language,
    Patient,
    Product,
    Protocol,
    Route,
    Sex,
    TreatmentCourse,
    User,
)
from patients.units import LAB_TESTS, corrected_calcium, normalise

FIRST_NAMES_F: tuple[str, ...] = tuple(_FrenchNames.first_names_female)
FIRST_NAMES_M: tuple[str, ...] = tuple(_FrenchNames.first_names_male)
LAST_NAMES: tuple[str, ...] = tuple(_FrenchNames.last_names)
DENTISTS = ("Dr Lefèvre", "Dr Marchand", "Dr Benali", "Dr Nguyen", "Dr Rousseau", "Dr Perrin")
SC_SITES = (
    InjectionSite.ABDOMEN,
    InjectionSite.THIGH_LEFT,
    InjectionSite.THIGH_RIGHT,
    InjectionSite.ARM_LEFT,
    InjectionSite.ARM_RIGHT,
)
IV_SITES = (InjectionSite.IV_LEFT, InjectionSite.IV_RIGHT)

# Share of patients per main story (denosumab 60 mg is the majority, as in a rheumatology clinic).
STORIES: tuple[tuple[str, int], ...] = (
    ("denosumab_op", 50),
    ("denosumab_op_to_start", 5),
    ("denosumab_onco", 12),
    ("zoledronic_onco", 10),
    ("consolidation_zoledronic", 10),
    ("consolidation_alendronate", 4),
    ("vitamin_d_only", 9),
)
# The first patients of every run: each story once, with the scenarios a demo must show.
SHOWCASE: tuple[tuple[str, frozenset[str]], ...] = (
    ("denosumab_op", frozenset({"late", "low_calcium"})),
    ("denosumab_op_to_start", frozenset({"extraction", "deficient"})),
    ("denosumab_onco", frozenset({"missed", "deficient"})),
    ("zoledronic_onco", frozenset({"overdue"})),
    ("consolidation_zoledronic", frozenset({"overdue"})),
    ("consolidation_alendronate", frozenset()),
    ("vitamin_d_only", frozenset({"deficient"})),
    ("denosumab_op", frozenset({"overdue"})),
)
STORY_NAMES = tuple(s for s, _w in STORIES)
STORY_WEIGHTS = tuple(w for _s, w in STORIES)


def add_months(anchor: date, months: int) -> date:
    """TIME-02: calendar months, clamped to the end of the target month."""
    index = anchor.year * 12 + anchor.month - 1 + months
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, min(anchor.day, calendar.monthrange(year, month0 + 1)[1]))


Row = dict[str, Any]


@dataclass
class Story:
    """One patient's rows as column values by attname. A child's ``patient``/``course`` key holds
    its parent's row; ``rows_insert`` resolves it to ``patient_id``/``course_id`` once ids exist."""

    patient: Row
    kind: str
    courses: list[Row] = field(default_factory=list)
    doses: list[Row] = field(default_factory=list)
    labs: list[Row] = field(default_factory=list)
    dental: list[Row] = field(default_factory=list)
    comedications: list[Row] = field(default_factory=list)


class StoryBuilder:
    """Builds stories for one care team; ``last_day`` is the latest date a fact may carry."""

    def __init__(
        self, *, team: CareTeam, nurse: User | None, physician: User | None, seed: int, today: date | None = None
    ) -> None:
        self.team = team
        self.tz = ZoneInfo(team.timezone)
        self.nurse_id = nurse.pk if nurse is not None else None
        self.physician_id = physician.pk if physician is not None else None
        self.rng = random.Random(seed)
        self.today = today or timezone.localdate(timezone=self.tz)
        self.last_day = self.today - timedelta(days=1)
        self.recorded_at = timezone.now()
        self.built = 0

    # --- small helpers ----------------------------------------------------------------------

    def _record(self, story: Story) -> Row:
        """The MedicalRecord columns every booklet row shares."""
        return {
            "public_id": uuid.uuid4(),
            "patient": story.patient,
            "recorded_by_id": self.nurse_id,
            "recorded_at": self.recorded_at,
            "voided_at": None,
            "voided_by_id": None,
            "void_reason": "",
        }

    def _at(self, day: date, hour_from: int = 8, hour_to: int = 17) -> datetime:
        """An aware instant on the local ``day``: its local date is ``day`` by construction."""
        rng = self.rng
        return datetime.combine(day, time(rng.randint(hour_from, hour_to), rng.choice((0, 15, 30, 45))), tzinfo=self.tz)

    def _days_back(self, lo: int, hi: int) -> date:
        return self.last_day - timedelta(days=self.rng.randint(lo, hi))

    def _lot(self, product: str) -> str:
        prefix = {"denosumab": "DMB", "zoledronic_acid": "ZOL"}.get(product, "LOT")
        return f"{prefix}{self.rng.randint(10000, 99999)}{self.rng.choice('ABCDEFGH')}"

    # --- the patient ------------------------------------------------------------------------

    def _patient(self, kind: str) -> Row:
        rng = self.rng
        onco = kind in ("denosumab_onco", "zoledronic_onco")
        sex = Sex.FEMALE if rng.random() < (0.55 if onco else 0.82) else Sex.MALE
        first = rng.choice(FIRST_NAMES_F if sex == Sex.FEMALE else FIRST_NAMES_M)
        last = rng.choice(LAST_NAMES)
        age = rng.randint(42, 86) if onco else rng.randint(55, 93)
        birth = self.today - timedelta(days=age * 365 + rng.randint(0, 364))
        slug = unicodedata.normalize("NFKD", f"{first}.{last}".lower()).encode("ascii", "ignore").decode()
        slug = "".join(c if c.isalnum() or c == "." else "-" for c in slug)
        has_email = rng.random() < 0.7
        has_phone = rng.random() < 0.8
        risk: list[str] = []
        if rng.random() < 0.18:
            risk.append("tobacco")
        if rng.random() < 0.06:
            risk.append("alcohol")
        predispositions: list[str] = []
        if rng.random() < 0.04:
            predispositions.append(rng.choice(("thyroid_surgery", "malabsorption", "hypoparathyroidism")))
        return {
            "public_id": uuid.uuid4(),
            "created_at": self.recorded_at,
            "updated_at": self.recorded_at,
            "user_id": None,
            "care_team_id": self.team.pk,
            "first_name": first,
            "last_name": last,
            "birth_date": birth,
            "sex": sex,
            "language": Language.EN if rng.random() < 0.07 else Language.FR,
            "timezone": self.team.timezone,
            "email": f"{slug}.{rng.randint(1, 999_999)}@demo.carnet.localhost" if has_email else "",
            "phone": "+33 6 " + " ".join(str(rng.randint(10, 99)) for _ in range(4)) if has_phone else "",
            "consent_email": has_email and rng.random() < 0.8,
            "consent_push": rng.random() < 0.5,
            "consent_sms": has_phone and rng.random() < 0.3,
            "weight_kg": Decimal(rng.randint(420, 950)) / 10,
            "dialysis": onco and rng.random() < 0.01,
            "risk_factors": risk,
            "predispositions": predispositions,
        }

    # --- rows -------------------------------------------------------------------------------

    def _course(self, story: Story, protocol: str, start: date, **extra: object) -> Row:
        indication = {
            Protocol.DENOSUMAB_ONCO: Indication.ONCOLOGY,
            Protocol.ZOLEDRONIC_ONCO: Indication.ONCOLOGY,
        }.get(Protocol(protocol), Indication.OSTEOPOROSIS)
        if protocol == Protocol.VITAMIN_D and story.kind in ("denosumab_onco", "zoledronic_onco"):
            indication = Indication.ONCOLOGY
        course: Row = {
            **self._record(story),
            "protocol": protocol,
            "indication": indication,
            "start_date": start,
            "prescriber_id": self.physician_id,
            "planned_duration_months": None,
            "stop_date": None,
            "stop_reason": "",
            "consolidation": "",
            "response": "",
            **extra,
        }
        story.courses.append(course)
        return course

    def _dose(
        self,
        story: Story,
        course: Row | None,
        product: str,
        value: Decimal,
        day: date,
        *,
        source: str = DoseRecord.Source.STAFF,
    ) -> Row:
        route = {Product.DENOSUMAB: Route.SC, Product.ZOLEDRONIC_ACID: Route.IV}.get(Product(product), Route.PO)
        staff = source == DoseRecord.Source.STAFF
        dose: Row = {
            **self._record(story),
            "course": course,
            "product": product,
            "dose_value": value,
            "dose_unit": "IU" if product == Product.CHOLECALCIFEROL else "mg",
            "route": route,
            "given_at": self._at(day),
            "given_on": day,
            "injection_site": (
                self.rng.choice(IV_SITES if route == Route.IV else SC_SITES) if staff and route != Route.PO else ""
            ),
            "lot_number": self._lot(product) if staff and route != Route.PO else "",
            "source": source,
            "given_by_id": self.nurse_id if staff else None,
            "override_reason": "",
            "override_flags": [],
        }
        if not staff:
            dose["recorded_by_id"] = None
        story.doses.append(dose)
        return dose

    def _lab(
        self, story: Story, test: str, value: Decimal, unit: str, day: date, albumin_g_l: Decimal | None = None
    ) -> Row:
        spec = LAB_TESTS[test]
        normalised = normalise(test, value, unit)
        corrected = None
        if test == LabResult.Test.CALCIUM_TOTAL:
            corrected = corrected_calcium(normalised, albumin_g_l).quantize(Decimal("0.001"))
        lab: Row = {
            **self._record(story),
            "test": test,
            "value_entered": value,
            "unit_entered": unit,
            "value": normalised,
            "unit": spec.unit,
            "albumin_g_l": albumin_g_l,
            "corrected_calcium_mmol_l": corrected,
            "reference_low": None,
            "reference_high": None,
            "drawn_at": self._at(day, 7, 11),
            "drawn_on": day,
        }
        story.labs.append(lab)
        return lab

    def _calcium(self, story: Story, day: date, *, low: bool = False) -> None:
        rng = self.rng
        albumin = Decimal(rng.randint(300, 460)) / 10 if rng.random() < 0.6 else None
        target = Decimal(rng.randint(190, 214) if low else rng.randint(224, 252)) / 100  # corrected, mmol/L
        measured = target - ((Decimal(40) - albumin) / 40 if albumin is not None else Decimal(0))
        measured = measured.quantize(Decimal("0.01"))
        if rng.random() < 0.15:
            self._lab(
                story, "calcium_total", (measured * Decimal("4.008")).quantize(Decimal("0.1")), "mg/dL", day, albumin
            )
        else:
            self._lab(story, "calcium_total", measured, "mmol/L", day, albumin)

    def _vitamin_d_level(self, story: Story, day: date, ng_ml: Decimal) -> None:
        if self.rng.random() < 0.5:
            self._lab(story, "25ohd", (ng_ml * Decimal("2.5")).quantize(Decimal("1")), "nmol/L", day)
        else:
            self._lab(story, "25ohd", ng_ml, "ng/mL", day)

    def _renal(self, story: Story, day: date) -> None:
        rng = self.rng
        roll = rng.random()
        egfr = rng.randint(15, 29) if roll < 0.03 else rng.randint(30, 59) if roll < 0.25 else rng.randint(60, 105)
        self._lab(story, "egfr", Decimal(egfr), "mL/min/1.73m2", day)
        self._lab(
            story, "creatinine", Decimal(rng.randint(55, 95) if egfr >= 60 else rng.randint(100, 280)), "umol/L", day
        )

    def _dental(self, story: Story, event: str, day: date, notes: str = "") -> None:
        story.dental.append(
            {
                **self._record(story),
                "event": event,
                "date": day,
                "dentist": self.rng.choice(DENTISTS),
                "notes": notes,
            }
        )

    # --- treatments -------------------------------------------------------------------------

    def _periodic(
        self,
        story: Story,
        course: Row,
        product: str,
        value: Decimal,
        next_after: Callable[[date, int], date],
        *,
        until: date,
        late: bool,
        overdue: bool,
        missed: bool,
        low_calcium: bool,
    ) -> list[date]:
        """Doses from the course start, each from the previous actual one (R3), with calcium before each."""
        rng = self.rng
        days: list[date] = []
        day = course["start_date"]
        late_at = rng.randint(1, 2) if late else -1
        missed_at = rng.randint(2, 6) if missed else -1
        index = 0
        while day <= until:
            if index != missed_at:
                days.append(day)
            nxt = next_after(day, index)
            delay = rng.randint(-7, 10)
            if index + 1 == late_at:
                delay = rng.randint(30, 120)
            day = nxt + timedelta(days=delay)
            index += 1
        if overdue and len(days) > 1:
            days.pop()  # the latest dose was never given: the next one is overdue today
        for k, given in enumerate(days):
            self._dose(story, course, product, value, given)
            if k >= len(days) - 4:  # CA-05: calcium drawn in the 30 days before each recent dose
                self._calcium(story, given - timedelta(days=rng.randint(2, 20)))
        if days and low_calcium:
            self._calcium(story, self._days_back(0, 12), low=True)
        elif days and rng.random() < 0.5:
            self._calcium(story, self._days_back(0, 25))
        return days

    def _vitamin_d(self, story: Story, start: date, baseline_ng_ml: Decimal) -> None:
        """VITD-02/03: 8 (< 20 ng/mL) or 4 (20 to < 30) weekly loading doses, then monthly maintenance."""
        rng = self.rng
        if start > self.last_day:
            return
        course = self._course(story, Protocol.VITAMIN_D, start)
        n = 8 if baseline_ng_ml < 20 else 4 if baseline_ng_ml < 30 else 0
        dose = Decimal(50000)
        last = start
        for k in range(n):
            day = start + timedelta(days=7 * k)
            if day > self.last_day:
                return
            self._dose(story, course, Product.CHOLECALCIFEROL, dose, day, source=DoseRecord.Source.SELF_REPORTED)
            last = day
        anchor = add_months(last, 1) if n else start
        k = 0
        while (day := add_months(anchor, k)) <= self.last_day:
            if rng.random() < 0.88:  # some months forgotten
                self._dose(story, course, Product.CHOLECALCIFEROL, dose, day, source=DoseRecord.Source.SELF_REPORTED)
            k += 1
        if n and add_months(start + timedelta(days=7 * n), 3) <= self.last_day:
            self._vitamin_d_level(story, add_months(start + timedelta(days=7 * n), 3), Decimal(rng.randint(24, 48)))

    def _baseline_vitamin_d(self, story: Story, day: date, *, deficient: bool) -> Decimal:
        rng = self.rng
        if deficient:
            level = Decimal(rng.randint(40, 195)) / 10  # < 20 ng/mL; some < 10 (VITD-06)
        else:
            level = Decimal(rng.choice((rng.randint(200, 299), rng.randint(300, 550)))) / 10
        self._vitamin_d_level(story, day, level)
        return level

    def build(self) -> Story:
        """The next patient. The first ones of a run show every story and every scenario (SHOWCASE)."""
        rng = self.rng
        kind = rng.choices(STORY_NAMES, STORY_WEIGHTS)[0]
        late = rng.random() < 0.15
        overdue = rng.random() < 0.15
        missed = rng.random() < 0.10
        low_calcium = rng.random() < 0.08
        deficient = rng.random() < 0.35
        extraction = rng.random() < 0.05
        if self.built < len(SHOWCASE):
            kind, forced = SHOWCASE[self.built]
            late = late or "late" in forced
            overdue = overdue or "overdue" in forced
            missed = missed or "missed" in forced
            low_calcium = low_calcium or "low_calcium" in forced
            deficient = deficient or "deficient" in forced
            extraction = extraction or "extraction" in forced
        self.built += 1
        story = Story(patient=self._patient(kind), kind=kind)
        onco = kind in ("denosumab_onco", "zoledronic_onco")

        if kind == "denosumab_op":
            start = self._days_back(3 * 365 if late else 20, 5 * 365)
            course = self._course(story, Protocol.DENOSUMAB_OP, start)
            self._periodic(
                story,
                course,
                Product.DENOSUMAB,
                Decimal(60),
                lambda d, _i: add_months(d, 6),
                until=self.last_day,
                late=late,
                overdue=overdue,
                missed=False,
                low_calcium=low_calcium,
            )
        elif kind == "denosumab_op_to_start":
            # VITD-04 / DENT-02: a course about to start, loading vitamin D, perhaps after an extraction.
            start = self.today + timedelta(days=rng.randint(0, 45))
            self._course(story, Protocol.DENOSUMAB_OP, start)
            deficient = True
            extraction = extraction or rng.random() < 0.4
        elif onco:
            start = self._days_back(300 if missed or overdue else 20, 540)
            protocol = Protocol.DENOSUMAB_ONCO if kind == "denosumab_onco" else Protocol.ZOLEDRONIC_ONCO
            extra: dict[str, object] = {}
            good_response = kind == "zoledronic_onco" and rng.random() < 0.4
            if good_response:
                extra["response"] = TreatmentCourse.Response.GOOD
            self._dental(story, DentalEvent.Event.EXAM, start - timedelta(days=rng.randint(20, 40)))
            self._dental(story, DentalEvent.Event.PANORAMIC_XRAY, start - timedelta(days=rng.randint(15, 19)))
            self._dental(story, DentalEvent.Event.CLEARANCE, start - timedelta(days=rng.randint(1, 14)))
            stopped = rng.random() < 0.1
            until = self.last_day
            if stopped:
                until = min(self.last_day, start + timedelta(days=rng.randint(90, 540)))
            course = self._course(story, protocol, start, **extra)
            if kind == "denosumab_onco":
                product, value = Product.DENOSUMAB, Decimal(120)

                def step(d: date, i: int) -> date:
                    return d + timedelta(days=28)
            else:
                product = Product.ZOLEDRONIC_ACID
                value = Decimal(rng.choice(("4.0", "4.0", "4.0", "3.5", "3.3", "3.0")))

                def step(d: date, i: int) -> date:
                    return add_months(d, 3 if good_response and i >= 11 else 1)

            days = self._periodic(
                story,
                course,
                product,
                value,
                step,
                until=until,
                late=late,
                overdue=overdue and not stopped,
                missed=missed,
                low_calcium=low_calcium,
            )
            if stopped and days:
                course["stop_date"] = min(self.last_day, days[-1] + timedelta(days=rng.randint(1, 20)))
                course["stop_reason"] = rng.choice(
                    ("Décision de RCP", "Progression, soins de support", "Ostéonécrose de la mâchoire suspectée")
                )
            self._renal(story, self._days_back(0, 60))
            if rng.random() < 0.15:
                story.comedications.append(
                    {
                        **self._record(story),
                        "name": "bévacizumab",
                        "drug_class": Comedication.DrugClass.ANTIANGIOGENIC,
                        "start_date": start - timedelta(days=rng.randint(0, 90)),
                        "stop_date": None,
                        "mg_per_day": None,
                    }
                )
        elif kind.startswith("consolidation"):
            # CONS-01/03: denosumab 60 mg stopped; the bisphosphonate starts 6 months after the last injection.
            start = self._days_back(2 * 365, 7 * 365)
            course = self._course(story, Protocol.DENOSUMAB_OP, start)
            stop_target = self._days_back(30, 540)
            days = self._periodic(
                story,
                course,
                Product.DENOSUMAB,
                Decimal(60),
                lambda d, _i: add_months(d, 6),
                until=max(start, add_months(stop_target, -6)),
                late=late,
                overdue=False,
                missed=False,
                low_calcium=False,
            )
            last = days[-1] if days else start
            zoledronic = kind == "consolidation_zoledronic"
            course["stop_date"] = min(
                self.last_day, max(last, add_months(last, 6) - timedelta(days=rng.randint(0, 30)))
            )
            course["stop_reason"] = rng.choice(
                ("Objectif densitométrique atteint", "Souhait de la patiente", "Durée de traitement atteinte")
            )
            course["consolidation"] = Protocol.ZOLEDRONIC_OP if zoledronic else Protocol.ALENDRONATE_OP
            cons_start = add_months(last, 6)
            if cons_start <= self.last_day:
                if zoledronic:
                    cons = self._course(story, Protocol.ZOLEDRONIC_OP, cons_start, planned_duration_months=12)
                    if not overdue:
                        given = cons_start + timedelta(days=rng.randint(0, 20))
                        if given <= self.last_day:
                            self._calcium(story, given - timedelta(days=rng.randint(3, 15)), low=low_calcium)
                            self._dose(story, cons, Product.ZOLEDRONIC_ACID, Decimal(5), given)
                    self._renal(story, cons_start - timedelta(days=rng.randint(5, 25)))
                else:
                    cons = self._course(story, Protocol.ALENDRONATE_OP, cons_start, planned_duration_months=12)
                    end = min(self.last_day, add_months(cons_start, 12) - timedelta(days=1))
                    week = cons_start
                    while week <= end:
                        if rng.random() < 0.9:
                            self._dose(
                                story,
                                cons,
                                Product.ALENDRONATE,
                                Decimal(70),
                                week,
                                source=DoseRecord.Source.SELF_REPORTED,
                            )
                        week += timedelta(days=7)
                    if add_months(cons_start, 12) <= self.last_day:
                        cons["stop_date"] = add_months(cons_start, 12) - timedelta(days=1)
                        cons["stop_reason"] = "Fin de la consolidation (12 mois)"
        # Vitamin D: measured before the antiresorptive starts (or recently, for long courses).
        main_start = story.courses[0]["start_date"] if story.courses else self._days_back(10, 200)
        measure_on = max(main_start - timedelta(days=rng.randint(10, 30)), self._days_back(60, 300))
        if kind == "vitamin_d_only":
            measure_on = self._days_back(5, 400)
        measure_on = min(measure_on, self.last_day)
        level = self._baseline_vitamin_d(story, measure_on, deficient=deficient)
        if level < 30 or rng.random() < 0.15:
            self._vitamin_d(story, measure_on + timedelta(days=rng.randint(2, 10)), level)
        if deficient and rng.random() < 0.3:
            self._vitamin_d_level(story, self._days_back(0, 20), Decimal(rng.randint(50, 185)) / 10)
        # Dental follow-up (DENT-03) and a recent extraction (DENT-02/04).
        if rng.random() < 0.5:
            self._dental(story, DentalEvent.Event.EXAM, self._days_back(30, 400))
        if extraction:
            day = self._days_back(1, 55)
            self._dental(story, DentalEvent.Event.EXTRACTION, day, "Extraction de la 36")
            if rng.random() < 0.5 and day + timedelta(days=21) <= self.last_day:
                self._dental(story, DentalEvent.Event.CLEARANCE, day + timedelta(days=21))
        if not onco and rng.random() < 0.1:
            story.comedications.append(
                {
                    **self._record(story),
                    "name": "prednisone",
                    "drug_class": Comedication.DrugClass.GLUCOCORTICOID,
                    "mg_per_day": Decimal(rng.choice(("5", "7.5", "10", "20"))),
                    "start_date": self._days_back(100, 900),
                    "stop_date": None,
                }
            )
        # A duplicate entry, voided with its reason (the booklet never deletes).
        staff_doses = [d for d in story.doses if d["source"] == DoseRecord.Source.STAFF]
        if staff_doses and rng.random() < 0.01:
            original = rng.choice(staff_doses)
            story.doses.append(
                {
                    **original,
                    "public_id": uuid.uuid4(),
                    "voided_at": self.recorded_at,
                    "voided_by_id": self.nurse_id,
                    "void_reason": "Saisie en double",
                }
            )
        return story


# --- bulk insert -----------------------------------------------------------------------------
#
# ``bulk_create`` spends most of its time compiling one parameter at a time (about 0.3 ms a row
# on SQLite). Here each table gets one prepared INSERT and ``executemany``; values are adapted
# with the fields' own ``get_db_prep_save`` (cached for repeated dates and instants), and primary
# keys are reserved up front so children can point at parents without a round trip.


class RowWriter:
    """One INSERT for one model; ``write`` takes rows keyed by attname (missing keys get defaults)."""

    def __init__(self, model: type[models.Model], connection: BaseDatabaseWrapper, *, with_pk: bool = True) -> None:
        self.model = model
        self.connection = connection
        # Rows without a reserved id leave the primary key to the database (identity/autoincrement).
        self.fields = [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(str(f.column)) for f in self.fields)
        marks = ", ".join(["%s"] * len(self.fields))
        self.sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608  # names from _meta
        self.adapters = [self._adapter(f) for f in self.fields]
        self.defaults = [self._default(f) for f in self.fields]

    def _adapter(self, f: models.Field[Any, Any]) -> Callable[[Any], Any] | None:
        connection = self.connection
        if isinstance(f, models.UUIDField):
            return None if connection.features.has_native_uuid_field else (lambda v: v.hex if v is not None else None)
        if isinstance(f, models.JSONField):
            empty = f.get_db_prep_save([], connection)
            return lambda v: empty if v == [] else f.get_db_prep_save(v, connection)
        if isinstance(f, models.DateField | models.DecimalField):  # DateTimeField is a DateField
            cache: dict[Any, Any] = {}
            prep = f.get_db_prep_save

            def adapt(v: Any) -> Any:
                if v is None:
                    return None
                try:
                    return cache[v]
                except KeyError:
                    if len(cache) > 200_000:
                        cache.clear()
                    cache[v] = prep(v, connection)
                    return cache[v]

            return adapt
        return None

    @staticmethod
    def _default(f: models.Field[Any, Any]) -> Callable[[], Any]:
        if f.primary_key:
            return lambda: None
        return f.get_default

    def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        names = [f.attname for f in self.fields]
        plan = list(zip(names, self.adapters, self.defaults, strict=True))
        params = [
            [
                (row[name] if name in row else default())
                if adapt is None
                else adapt(row[name] if name in row else default())
                for name, adapt, default in plan
            ]
            for row in rows
        ]
        with self.connection.cursor() as cursor:
            cursor.executemany(self.sql, params)


def ids_reserve(model: type[models.Model], count: int, connection: BaseDatabaseWrapper) -> list[int]:
    """``count`` fresh primary keys for ``model``, inside the caller's transaction."""
    table = model._meta.db_table
    if count == 0:
        return []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
            )
            return [row[0] for row in cursor.fetchall()]
        if connection.vendor == "sqlite":
            # The demo runs in a BEGIN IMMEDIATE transaction (settings), which holds the write lock;
            # AUTOINCREMENT never reuses an id, so start past sqlite_sequence as well as MAX(id).
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            top = int(cursor.fetchone()[0])
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
            seq = cursor.fetchone()
            start = max(top, int(seq[0]) if seq else 0) + 1
            return list(range(start, start + count))
    raise NotImplementedError(f"demo ids on {connection.vendor}: use SQLite or PostgreSQL")


def stories_insert(stories: Sequence[Story], *, using: str = "default") -> list[int]:
    """Insert the stories' rows (parents first); returns the new patients' ids. Call in a transaction."""
    connection = connections[using]
    patient_ids = ids_reserve(Patient, len(stories), connection)
    for story, pk in zip(stories, patient_ids, strict=True):
        story.patient["id"] = pk
    courses = [c for s in stories for c in s.courses]
    for course, pk in zip(courses, ids_reserve(TreatmentCourse, len(courses), connection), strict=True):
        course["id"] = pk
    RowWriter(Patient, connection).write([s.patient for s in stories])
    children: list[tuple[type[models.Model], list[Row]]] = [
        (TreatmentCourse, courses),
        (DoseRecord, [d for s in stories for d in s.doses]),
        (LabResult, [lab for s in stories for lab in s.labs]),
        (DentalEvent, [e for s in stories for e in s.dental]),
        (Comedication, [c for s in stories for c in s.comedications]),
    ]
    for model, rows in children:
        for row in rows:
            row["patient_id"] = row["patient"]["id"]
            if "course" in row:
                course = row["course"]
                row["course_id"] = course["id"] if course is not None else None
        RowWriter(model, connection, with_pk=bool(rows) and "id" in rows[0]).write(rows)
    return patient_ids
