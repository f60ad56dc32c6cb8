"""Reads for the nurse pages. Every function takes the team ids it may read; none writes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from patients.models import DoseRecord, Patient, StaffMembership, TreatmentCourse, User
from scheduling.models import OPEN_STATUSES, Appointment, Escalation, ItemStatus, PlanItem
from scheduling.rules.assemble import PRODUCT_PROTOCOL_FALLBACK
from scheduling.rules.calendar import add_months
from scheduling.selectors import rules_config
from scheduling.worklist import WORKLIST_KINDS, worklist_items
from web.adherence import COUNTED_PROTOCOLS, CourseFact, DoseFact, DoseWindow, adherence_share, dose_windows

ADHERENCE_YEARS = 2


# --- adherence --------------------------------------------------------------------------------


def _dose_protocol(dose: DoseRecord, course_protocol: str | None) -> str | None:
    if course_protocol:
        return course_protocol
    if dose.product == "zoledronic_acid" and float(dose.dose_value) < 5:
        return "zoledronic_onco_4mg"
    return PRODUCT_PROTOCOL_FALLBACK.get((dose.product, int(dose.dose_value)))


def adherence_windows(patient_filter: Q, *, since: date) -> list[DoseWindow]:
    """Due windows of the live injections of the patients matched by ``patient_filter``, given since
    ``since`` minus a year (so each counted dose has its previous one). Two queries."""
    courses = list(
        TreatmentCourse.objects.filter(patient_filter, voided_at__isnull=True).only(
            "pk", "protocol", "stop_date", "response"
        )
    )
    course_facts = [CourseFact(str(c.pk), c.protocol, c.stop_date, c.response or None) for c in courses]
    protocol_of = {c.pk: c.protocol for c in courses}
    doses = DoseRecord.objects.filter(
        patient_filter,
        voided_at__isnull=True,
        product__in=("denosumab", "zoledronic_acid"),
        given_on__gte=add_months(since, -12),
    ).only("pk", "patient_id", "course_id", "product", "dose_value", "given_on")
    facts = []
    for dose in doses:
        protocol = _dose_protocol(dose, protocol_of.get(dose.course_id) if dose.course_id else None)
        if protocol in COUNTED_PROTOCOLS:
            facts.append(
                DoseFact(
                    key=str(dose.pk),
                    protocol=protocol,
                    given_on=dose.given_on,
                    course_key=str(dose.course_id) if dose.course_id else None,
                    patient_key=str(dose.patient_id),
                )
            )
    return dose_windows(facts, course_facts, config=rules_config())


@dataclass(frozen=True)
class Adherence:
    inside: int
    counted: int
    since: date
    until: date

    @property
    def percent(self) -> int | None:
        return None if not self.counted else round(100 * self.inside / self.counted)


def patient_adherence(patient: Patient, *, today: date) -> tuple[Adherence, list[DoseWindow]]:
    since = add_months(today, -12 * ADHERENCE_YEARS)
    windows = adherence_windows(Q(patient_id=patient.pk), since=since)
    inside, counted = adherence_share(windows, since=since, until=today)
    return Adherence(inside, counted, since, today), windows


@dataclass(frozen=True)
class MonthCell:
    month: date
    protocol: str
    inside: int
    counted: int

    @property
    def percent(self) -> int | None:
        return None if not self.counted else round(100 * self.inside / self.counted)


def team_adherence_by_month(*, team_ids: list[int], today: date, months: int = 12) -> list[MonthCell]:
    """Share of injections given inside their window, by calendar month given and protocol."""
    first = add_months(today.replace(day=1), -(months - 1))
    windows = adherence_windows(Q(patient__care_team_id__in=team_ids), since=first)
    cells: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for w in windows:
        if not first <= w.dose.given_on <= today:
            continue
        cell = cells[(w.dose.given_on.replace(day=1), w.dose.protocol)]
        cell[0] += int(w.inside)
        cell[1] += 1
    out = []
    for k in range(months):
        month = add_months(first, k)
        for protocol in COUNTED_PROTOCOLS:
            inside, counted = cells.get((month, protocol), [0, 0])
            out.append(MonthCell(month, protocol, inside, counted))
    return out


# --- calendar ---------------------------------------------------------------------------------


def team_staff(team_id: int) -> QuerySet[User]:
    return User.objects.filter(
        memberships__care_team_id=team_id, is_active=True, role__in=("nurse", "physician", "team_admin")
    ).order_by("first_name", "last_name", "email")


def team_nurses(team_id: int) -> list[User]:
    """Who can be booked: the team's nurses first, then its other staff."""
    staff = list(team_staff(team_id))
    roles = dict(StaffMembership.objects.filter(care_team_id=team_id).values_list("user_id", "role"))
    return sorted(staff, key=lambda u: (roles.get(u.pk) != "nurse", u.first_name, u.last_name, u.email))


def day_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants from ``first`` 00:00 to the end of ``last``, local time."""
    return (
        datetime.combine(first, time.min, tzinfo=tz),
        datetime.combine(last + timedelta(days=1), time.min, tzinfo=tz),
    )


def appointments_between(*, team_id: int, first: date, last: date, tz: ZoneInfo) -> list[Appointment]:
    start, end = day_bounds(first, last, tz)
    return list(
        Appointment.objects.filter(care_team_id=team_id, starts_at__gte=start, starts_at__lt=end)
        .exclude(status=Appointment.Status.CANCELLED)
        .select_related("patient", "nurse", "plan_item")
        .order_by("starts_at", "pk")
    )


def unbooked_items(*, team_id: int, today: date, horizon_days: int = 60) -> list[PlanItem]:
    """Administration items due soon, overdue or blocked, with no booked appointment; most urgent first.

    Urgency is the worklist's ranking (rebound risk, days late, ladder level), then the due date.
    """
    booked = Appointment.objects.filter(plan_item=OuterRef("pk"), status=Appointment.Status.BOOKED)
    rows = (
        PlanItem.objects.filter(
            patient__care_team_id=team_id,
            kind__in=WORKLIST_KINDS,
            closed_at__isnull=True,
            status__in=OPEN_STATUSES,
        )
        .filter(Q(due__lte=today + timedelta(days=horizon_days)) | ~Q(status=ItemStatus.SCHEDULED))
        .exclude(Exists(booked))
        .select_related("patient")
    )
    return rank_items(rows)


def rank_items(items: Iterable[PlanItem]) -> list[PlanItem]:
    """The worklist's order: rebound risk, days late, level, due date."""
    from scheduling.worklist import OP, REBOUND_DAYS_LATE

    def key(item: PlanItem) -> tuple[int, int, int, date, int]:
        rebound = int(
            item.days_late >= REBOUND_DAYS_LATE
            and ((item.protocol == OP and item.kind == "injection") or item.kind == "consolidation")
        )
        level = {"L4": 4, "L3": 3, "L2": 2, "L1": 1}.get(item.level, 0)
        return (-rebound, -item.days_late, -level, item.due, item.pk)

    return sorted(items, key=key)


def booked_appointments(item_ids: list[int]) -> dict[int, Appointment]:
    rows = Appointment.objects.filter(plan_item_id__in=item_ids, status=Appointment.Status.BOOKED).select_related(
        "nurse"
    )
    return {a.plan_item_id: a for a in rows if a.plan_item_id is not None}


def worklist(*, team_id: int) -> QuerySet[PlanItem]:
    """The ranked worklist of one team, with escalations, who was told, and outcomes prefetched."""
    from notifications.models import OutboxMessage
    from web.models import WorklistOutcome

    # The shared selector prefetches escalations alone; here they come with their outbox rows too.
    return (
        worklist_items(team_ids=[team_id])
        .prefetch_related(None)
        .prefetch_related(
            Prefetch(
                "escalations",
                queryset=Escalation.objects.select_related("acknowledged_by")
                .prefetch_related(
                    Prefetch(
                        "outbox",
                        queryset=OutboxMessage.objects.select_related("recipient_user").order_by("send_at", "pk"),
                    )
                )
                .order_by("level"),
            ),
            Prefetch(
                "worklist_outcomes",
                queryset=WorklistOutcome.objects.select_related("recorded_by"),
            ),
        )
    )
