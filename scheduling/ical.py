"""iCal (RFC 5545) feeds: a patient's plan, a nurse's appointments, a care team's calendar.

What calendar clients rely on, and how each is kept:

- identity: one UID per plan item (``planitem-<public_id>@carnet``) or appointment
  (``appointment-<public_id>@carnet``), never reused;
- revisions: SEQUENCE is ``PlanItem.version - 1`` (bumped when the item's dates move or it reopens) or
  ``Appointment.sequence`` (bumped by every move and cancellation);
- DTSTAMP and LAST-MODIFIED are the row's ``updated_at`` and CREATED its ``created_at``, so the
  bytes depend only on the stored rows and today's date: the ETag (``ical_state.feed_state``)
  comes from aggregates of the same rows, read with the token lookup, and a conditional GET
  never renders;
- all-day items are DATE values (windows have no time zone); appointments are DATE-TIME values
  in the patient's (or the team's) zone with a VTIMEZONE for every zone used;
- a cancelled event stays 30 days with STATUS:CANCELLED so clients remove it, then leaves.

Every feed is read in a fixed number of queries whatever the history length, as plain rows (no
model instances). Events are written by ``ical_writer`` (escaping, folding, value formats; icalendar
supplies each VTIMEZONE); their words are ``ical_words``'.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from patients.models import StaffMembership
from scheduling import ical_writer
from scheduling.ical_words import NEUTRAL_DESCRIPTION, WORDS, day_text, language_of, patient_title, staff_title
from scheduling.models import OPEN_STATUSES, Appointment, ItemKind, ItemStatus, PlanItem
from scheduling.models_feeds import CalendarFeed

PRODID = "-//Carnet//Carnet calendar feed//EN"
# Bump when the rendering changes: every ETag changes with it, and so does every cached body.
RENDER_VERSION = "2"  # 2: written by ical_writer (75-octet folds)
CANCELLED_KEPT_DAYS = 30
TTL = timedelta(hours=1)
DOSE_KINDS = (ItemKind.INJECTION, ItemKind.CONSOLIDATION)


def history_days() -> int:
    """Done items older than this leave the feed (a subscribed calendar stays small)."""
    return int(getattr(settings, "CARNET_ICAL_HISTORY_DAYS", 730))


# --- reminders (VALARM) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reminder:
    """A reminder ``days_before`` the event, at ``hour`` local time (the morning itself: 0 days)."""

    days_before: int
    hour: int = 9


def reminder_leads(*, patient_id: int, kind: str) -> tuple[Reminder, ...]:
    """The patient's reminder lead times for an item kind.

    Defaults until notification preferences exist: injections and consolidation 14 days and
    3 days before, and the morning itself; other items 3 days before and the morning itself.
    """
    hour = notify_hour()
    if kind in DOSE_KINDS:
        return (Reminder(14, hour), Reminder(3, hour), Reminder(0, hour))
    return (Reminder(3, hour), Reminder(0, hour))


def notify_hour() -> int:
    rules = getattr(settings, "CARNET_RULES", {}) or {}
    value = rules.get("notify_hour", 9) if isinstance(rules, dict) else 9
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 9


def _trigger_all_day(reminder: Reminder) -> timedelta:
    # Relative to the (floating) local midnight starting the event: N nominal days back, then the hour.
    return timedelta(days=-reminder.days_before, hours=reminder.hour)


def _trigger_timed(reminder: Reminder, start_local: datetime) -> timedelta:
    # Wall-clock difference: RFC 5545 days in a duration are nominal, so "-P14DT1H" is right across DST.
    wall_start = start_local.replace(tzinfo=None)
    target = datetime.combine(start_local.date() - timedelta(days=reminder.days_before), time(reminder.hour))
    if reminder.days_before == 0 and target > wall_start - timedelta(hours=1):
        target = wall_start - timedelta(hours=1)  # an early appointment: an hour before it instead
    return target - wall_start


# --- the feed's owner -----------------------------------------------------------------------


@dataclass(frozen=True)
class FeedOwner:
    """What rendering a feed needs of it and its owner: from the model (``of``) or from the 304 query."""

    kind: str
    precise_titles: bool
    owner_id: int  # the patient, the subscribing nurse, or the care team
    language: str
    zone: str
    team_name: str = ""

    @classmethod
    def of(cls, feed: CalendarFeed) -> FeedOwner:
        """From a feed with its owner rows (``select_related("patient", "user", "care_team")``)."""
        if feed.kind == CalendarFeed.Kind.PATIENT:
            assert feed.patient is not None
            patient = feed.patient
            return cls(feed.kind, feed.precise_titles, patient.pk, language_of(patient.language), patient.timezone)
        assert feed.user is not None
        language = language_of(feed.user.language)
        if feed.kind == CalendarFeed.Kind.NURSE:
            return cls(feed.kind, feed.precise_titles, feed.user.pk, language, settings.TIME_ZONE)
        assert feed.care_team is not None
        team = feed.care_team
        return cls(feed.kind, feed.precise_titles, team.pk, language, team.timezone, team_name=team.name)


# --- reading the rows (a fixed number of queries) -------------------------------------------


@dataclass(frozen=True)
class _Span:
    """What a feed shows on ``today``: done history from ``history_from``, cancellations since ``cancelled_since``."""

    today: date
    history_from: date
    history_from_instant: datetime
    cancelled_since: datetime


def _span(today: date, zone: ZoneInfo) -> _Span:
    history_from = today - timedelta(days=history_days())
    return _Span(
        today=today,
        history_from=history_from,
        history_from_instant=datetime.combine(history_from, time(0), zone),
        cancelled_since=datetime.combine(today - timedelta(days=CANCELLED_KEPT_DAYS), time(0), zone),
    )


def _items_shown(qs: QuerySet[PlanItem], span: _Span) -> QuerySet[PlanItem]:
    return qs.filter(
        Q(status__in=OPEN_STATUSES)
        | Q(status__in=[ItemStatus.DONE, ItemStatus.MISSED], due__gte=span.history_from)
        | Q(status=ItemStatus.CANCELLED, closed_at__gte=span.cancelled_since)
    )


def _appointments_shown(qs: QuerySet[Appointment], span: _Span) -> QuerySet[Appointment]:
    return qs.filter(
        Q(status=Appointment.Status.BOOKED)
        | Q(status=Appointment.Status.DONE, starts_at__gte=span.history_from_instant)
        | Q(status=Appointment.Status.CANCELLED, cancelled_at__gte=span.cancelled_since)
    )


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Style:
    lang: str
    precise: bool
    for_patient: bool  # the patient's own feed: neutral titles by default, reminders

    def title(self, who: tuple[str, str], kind: str | None, product: str, dose_mg: object) -> str:
        """The event title; ``who`` is the patient's (first name, last name), shown to staff only."""
        if self.for_patient:
            return patient_title(kind, product, dose_mg, self.lang, precise=self.precise)
        return staff_title(*who, kind, product, dose_mg, self.lang, precise=self.precise)


# Rows are read as plain tuples (no model instances): ten years of history is a few hundred rows,
# and building PlanItem instances (JSON flags and all) cost more than writing the calendar.
ITEM_COLUMNS = (
    "pk",
    "patient_id",
    "public_id",
    "kind",
    "product",
    "dose_mg",
    "due",
    "window_start",
    "window_end",
    "status",
    "version",
    "created_at",
    "updated_at",
)
APPOINTMENT_COLUMNS = (
    "patient_id",
    "public_id",
    "status",
    "starts_at",
    "ends_at",
    "sequence",
    "out_of_window_reason",
    "created_at",
    "updated_at",
    "plan_item_id",
    "plan_item__kind",
    "plan_item__product",
    "plan_item__dose_mg",
)
# Staff feeds name the patient and show each appointment in its team's zone (joins a patient
# feed does without).
STAFF_ITEM_COLUMNS = (*ITEM_COLUMNS, "patient__first_name", "patient__last_name")
STAFF_APPOINTMENT_COLUMNS = (*APPOINTMENT_COLUMNS, "patient__first_name", "patient__last_name", "care_team__timezone")


@dataclass(frozen=True, slots=True)
class _ItemRow:
    pk: int
    patient_id: int
    public_id: uuid.UUID
    kind: str
    product: str
    dose_mg: Decimal | None
    due: date
    window_start: date | None
    window_end: date | None
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    first_name: str = ""
    last_name: str = ""


@dataclass(frozen=True, slots=True)
class _AppointmentRow:
    patient_id: int
    public_id: uuid.UUID
    status: str
    starts_at: datetime
    ends_at: datetime
    sequence: int
    out_of_window_reason: str
    created_at: datetime
    updated_at: datetime
    plan_item_id: int | None
    kind: str | None
    product: str | None
    dose_mg: Decimal | None
    first_name: str = ""
    last_name: str = ""
    team_timezone: str = ""


def _item_rows(qs: QuerySet[PlanItem], *, staff: bool) -> list[_ItemRow]:
    columns = STAFF_ITEM_COLUMNS if staff else ITEM_COLUMNS
    return [_ItemRow(*row) for row in qs.order_by().values_list(*columns)]


def _appointment_rows(qs: QuerySet[Appointment], *, staff: bool) -> list[_AppointmentRow]:
    columns = STAFF_APPOINTMENT_COLUMNS if staff else APPOINTMENT_COLUMNS
    return [_AppointmentRow(*row) for row in qs.order_by().values_list(*columns)]


def _item_event(item: _ItemRow, style: _Style, today: date) -> ical_writer.CalendarEvent:
    first, last = (item.window_start or item.due, item.window_end or item.due)
    words = WORDS[style.lang]
    title = style.title((item.first_name, item.last_name), item.kind, item.product, item.dose_mg)
    uid = f"planitem-{item.public_id}@carnet"
    cancelled = item.status == ItemStatus.CANCELLED
    if cancelled:
        description = words["cancelled"]
    elif not style.precise and style.for_patient:
        description = NEUTRAL_DESCRIPTION[style.lang]
    elif first == last:
        description = words["due"].format(due=day_text(item.due, style.lang))
    else:
        description = words["window"].format(
            first=day_text(first, style.lang), last=day_text(last, style.lang), due=day_text(item.due, style.lang)
        )
    if item.status == ItemStatus.DONE:
        description = f"{words['done']} {description}"
    alarms: list[tuple[str, timedelta]] = []
    if style.for_patient and item.status in OPEN_STATUSES and first >= today:
        for reminder in reminder_leads(patient_id=item.patient_id, kind=item.kind):
            if first - timedelta(days=reminder.days_before) >= today:  # a reminder already past would pop up late
                alarms.append((title, _trigger_all_day(reminder)))
    return ical_writer.vevent(
        uid=uid,
        summary=title,
        start=first,
        end=last + timedelta(days=1),  # DTEND is exclusive: the window's last day + 1
        sequence=max(item.version - 1, 0),
        created=item.created_at,
        modified=item.updated_at,
        description=description,
        status="CANCELLED" if cancelled else "CONFIRMED",
        transp="TRANSPARENT",  # a window is not busy time
        alarms=alarms,
    )


def _appointment_event(
    appointment: _AppointmentRow, zone: ZoneInfo, style: _Style, today: date
) -> ical_writer.CalendarEvent:
    kind = appointment.kind
    title = style.title(
        (appointment.first_name, appointment.last_name), kind, appointment.product or "", appointment.dose_mg
    )
    start = timezone.localtime(appointment.starts_at, zone)
    end = timezone.localtime(appointment.ends_at, zone)
    words = WORDS[style.lang]
    uid = f"appointment-{appointment.public_id}@carnet"
    cancelled = appointment.status == Appointment.Status.CANCELLED
    lines: list[str] = []
    if cancelled:
        lines.append(words["cancelled"])
    elif appointment.status == Appointment.Status.DONE:
        lines.append(words["done"])
    if style.for_patient and not style.precise:
        lines.append(NEUTRAL_DESCRIPTION[style.lang])
    elif not style.for_patient and style.precise and appointment.out_of_window_reason:
        lines.append(words["out_of_window"].format(reason=appointment.out_of_window_reason))
    alarms: list[tuple[str, timedelta]] = []
    if style.for_patient and appointment.status == Appointment.Status.BOOKED and start.date() >= today:
        for reminder in reminder_leads(patient_id=appointment.patient_id, kind=kind or ItemKind.INJECTION):
            if start.date() - timedelta(days=reminder.days_before) >= today:
                alarms.append((title, _trigger_timed(reminder, start)))
    return ical_writer.vevent(
        uid=uid,
        summary=title,
        start=start,
        end=end,
        sequence=appointment.sequence,
        created=appointment.created_at,
        modified=appointment.updated_at,
        description=" ".join(lines) if lines else None,
        status="CANCELLED" if cancelled else "CONFIRMED",
        transp="OPAQUE",
        alarms=alarms,
    )


def calendar(name: str, events: Iterable[ical_writer.CalendarEvent]) -> bytes:
    """A VCALENDAR of ``events`` (sorted by start), with a VTIMEZONE for each zone they name."""
    out = ical_writer.Writer()
    out.begin("VCALENDAR")
    out.add("VERSION", "2.0")
    out.add("PRODID", ical_writer.text(PRODID))
    out.add("CALSCALE", "GREGORIAN")
    out.add_text("NAME", name)
    out.add_text("X-WR-CALNAME", name)
    out.add("REFRESH-INTERVAL", ical_writer.duration(TTL), value="DURATION")
    out.add("X-PUBLISHED-TTL", ical_writer.duration(TTL))
    ordered = sorted(events, key=lambda event: event.order)
    # A VTIMEZONE for every zone a DATE-TIME names (all-day DATE values name none).
    for tzid in sorted({event.tzid for event in ordered if event.tzid is not None}):
        out.add_block(ical_writer.vtimezone(tzid))
    for event in ordered:
        out.lines.extend(event.lines)
    out.end("VCALENDAR")
    return out.to_ical()


# --- the three feeds ------------------------------------------------------------------------


def _patient_feed(owner: FeedOwner, span: _Span, zone: ZoneInfo) -> bytes:
    style = _Style(lang=owner.language, precise=owner.precise_titles, for_patient=True)
    items = _item_rows(_items_shown(PlanItem.objects.filter(patient_id=owner.owner_id), span), staff=False)
    appointments = _appointment_rows(
        _appointments_shown(Appointment.objects.filter(patient_id=owner.owner_id), span), staff=False
    )
    # An item with a live (booked or done) appointment shows as that appointment, timed.
    covered = {a.plan_item_id for a in appointments if a.status != Appointment.Status.CANCELLED}
    events = [_appointment_event(a, zone, style, span.today) for a in appointments]
    events += [_item_event(i, style, span.today) for i in items if i.pk not in covered]
    return calendar(WORDS[style.lang]["patient_calendar"], events)


def _nurse_feed(owner: FeedOwner, span: _Span) -> bytes:
    style = _Style(lang=owner.language, precise=owner.precise_titles, for_patient=False)
    teams = StaffMembership.objects.filter(user_id=owner.owner_id).values("care_team_id")
    mine = Appointment.objects.filter(nurse_id=owner.owner_id, care_team_id__in=Subquery(teams))
    appointments = _appointment_rows(_appointments_shown(mine, span), staff=True)
    events = [_appointment_event(a, ZoneInfo(a.team_timezone), style, span.today) for a in appointments]
    return calendar(WORDS[style.lang]["nurse_calendar"], events)


def _team_feed(owner: FeedOwner, span: _Span, zone: ZoneInfo) -> bytes:
    style = _Style(lang=owner.language, precise=owner.precise_titles, for_patient=False)
    appointments = _appointment_rows(
        _appointments_shown(Appointment.objects.filter(care_team_id=owner.owner_id), span), staff=True
    )
    booked = Appointment.objects.filter(plan_item_id=OuterRef("pk"), status=Appointment.Status.BOOKED)
    unbooked = _item_rows(
        PlanItem.objects.filter(patient__care_team_id=owner.owner_id)
        .filter(status__in=[s for s in OPEN_STATUSES if s != ItemStatus.SCHEDULED])
        .filter(~Exists(booked)),
        staff=True,
    )
    events = [_appointment_event(a, zone, style, span.today) for a in appointments]
    events += [_item_event(i, style, span.today) for i in unbooked]
    return calendar(WORDS[style.lang]["team_calendar"].format(team=owner.team_name), events)


def feed_render(feed: CalendarFeed | FeedOwner, *, now: datetime | None = None) -> bytes:
    """The feed's iCalendar bytes, from the feed with its owner rows or from its ``FeedOwner``."""
    owner = feed if isinstance(feed, FeedOwner) else FeedOwner.of(feed)
    zone = ZoneInfo(owner.zone)
    today = timezone.localtime(now or timezone.now(), zone).date()
    span = _span(today, zone)
    if owner.kind == CalendarFeed.Kind.PATIENT:
        return _patient_feed(owner, span, zone)
    if owner.kind == CalendarFeed.Kind.NURSE:
        return _nurse_feed(owner, span)
    return _team_feed(owner, span, zone)
