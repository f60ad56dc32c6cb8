"""iCal (RFC 5545) feeds: a patient's plan, a nurse's appointments, a care team's calendar.

What calendar clients rely on, and how each is kept:

- identity: one UID per plan item (``planitem-<public_id>@carnet``) or appointment
  (``appointment-<public_id>@carnet``), never reused;
- revisions: SEQUENCE is ``PlanItem.version - 1`` (bumped only when the item's dates move) or
  ``Appointment.sequence`` (bumped by every move and cancellation);
- DTSTAMP and LAST-MODIFIED are the row's ``updated_at`` and CREATED its ``created_at``, so the
  bytes depend only on the stored rows and today's date: the ETag (``feed_state``) is computed
  from a cheap aggregate of the same rows, and a conditional GET never renders;
- all-day items are DATE values (windows have no time zone); appointments are DATE-TIME values
  in the patient's (or the team's) zone with a VTIMEZONE for every zone used;
- a cancelled event stays 30 days with STATUS:CANCELLED so clients remove it, then leaves.

Every feed is read in a fixed number of queries whatever the history length. Folding and
escaping are icalendar's job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from patients.models import Patient, StaffMembership
from scheduling.models import OPEN_STATUSES, Appointment, ItemKind, ItemStatus, PlanItem
from scheduling.models_feeds import CalendarFeed

PRODID = "-//Carnet//Carnet calendar feed//EN"
# Bump when the rendering changes: every ETag changes with it, and so does every cached body.
RENDER_VERSION = "1"
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


def reminder_leads(*, patient: Patient, kind: str) -> tuple[Reminder, ...]:
    """The patient's reminder lead times for an item kind.

    Defaults until notification preferences exist: injections and consolidation 14 days and
    3 days before, and the morning itself; other items 3 days before and the morning itself.
    """
    hour = _notify_hour()
    if kind in DOSE_KINDS:
        return (Reminder(14, hour), Reminder(3, hour), Reminder(0, hour))
    return (Reminder(3, hour), Reminder(0, hour))


def _notify_hour() -> int:
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


# --- words ----------------------------------------------------------------------------------

NEUTRAL_TITLE = {"en": "Carnet: care appointment", "fr": "Carnet : rendez-vous de soins"}
NEUTRAL_DESCRIPTION = {
    "en": "Open the Carnet app for the details.",
    "fr": "Ouvrez l'application Carnet pour le détail.",
}
KIND_LABEL: dict[str, dict[str, str]] = {
    ItemKind.INJECTION: {"en": "injection", "fr": "injection"},
    ItemKind.CONSOLIDATION: {"en": "consolidation treatment", "fr": "traitement de consolidation"},
    ItemKind.CALCIUM_CHECK: {"en": "calcium blood test", "fr": "dosage de la calcémie"},
    ItemKind.VITAMIN_D_DOSE: {"en": "vitamin D dose", "fr": "prise de vitamine D"},
    ItemKind.VITAMIN_D_TEST: {"en": "vitamin D blood test", "fr": "dosage de la vitamine D"},
    ItemKind.CTX_CHECK: {"en": "CTX blood test", "fr": "dosage des CTX"},
    ItemKind.DENTAL_VISIT: {"en": "dental visit", "fr": "consultation dentaire"},
    ItemKind.REEVALUATION: {"en": "treatment re-evaluation", "fr": "réévaluation du traitement"},
}
APPOINTMENT_LABEL = {"en": "care appointment", "fr": "rendez-vous de soins"}
PRODUCT_LABEL: dict[str, dict[str, str]] = {
    "denosumab": {"en": "denosumab", "fr": "dénosumab"},
    "zoledronic_acid": {"en": "zoledronic acid", "fr": "acide zolédronique"},
    "alendronate": {"en": "alendronate", "fr": "alendronate"},
    "cholecalciferol": {"en": "vitamin D (cholecalciferol)", "fr": "vitamine D (cholécalciférol)"},
}
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "sep": ": ",
        "window": "To do between {first} and {last} (due {due}).",
        "due": "Due {due}.",
        "reminder": "Carnet reminder",
        "patient_calendar": "Carnet",
        "nurse_calendar": "Carnet — my appointments",
        "team_calendar": "Carnet — {team}",
        "cancelled": "Cancelled.",
        "done": "Done.",
        "out_of_window": "Booked outside the window: {reason}",
        "unbooked": "not booked",
    },
    "fr": {
        "sep": " : ",
        "window": "À faire entre le {first} et le {last} (échéance le {due}).",
        "due": "Échéance le {due}.",
        "reminder": "Rappel Carnet",
        "patient_calendar": "Carnet",
        "nurse_calendar": "Carnet — mes rendez-vous",
        "team_calendar": "Carnet — {team}",
        "cancelled": "Annulé.",
        "done": "Fait.",
        "out_of_window": "Réservé hors fenêtre : {reason}",
        "unbooked": "non réservé",
    },
}


def _lang(value: str | None) -> str:
    return value if value in ("en", "fr") else "fr"


def _day(value: date, lang: str) -> str:
    return value.strftime("%d/%m/%Y") if lang == "fr" else value.isoformat()


def _what(kind: str | None, product: str, dose_mg: object, lang: str, *, precise: bool) -> str:
    label = KIND_LABEL[kind][lang] if kind in KIND_LABEL else APPOINTMENT_LABEL[lang]
    if precise and product in PRODUCT_LABEL:
        label = f"{label} — {PRODUCT_LABEL[product][lang]}"
        if isinstance(dose_mg, int | float | Decimal):
            label = f"{label} {float(dose_mg):g} mg"
    return label


def _patient_title(kind: str | None, product: str, dose_mg: object, lang: str, *, precise: bool) -> str:
    if not precise:
        return NEUTRAL_TITLE[lang]
    return f"Carnet{WORDS[lang]['sep']}{_what(kind, product, dose_mg, lang, precise=True)}"


def _staff_title(patient: Patient, kind: str | None, product: str, dose_mg: object, lang: str, *, precise: bool) -> str:
    # Staff need to know whom; by default only initials leave Carnet for a third-party calendar.
    what = _what(kind, product, dose_mg, lang, precise=precise)
    who = (
        f"{patient.first_name} {patient.last_name.upper()}"
        if precise
        else f"{patient.first_name[:1]}. {patient.last_name[:1]}.".upper()
    )
    return f"{what[:1].upper()}{what[1:]} — {who}"


# --- the state behind the ETag (no rendering) -----------------------------------------------


@dataclass(frozen=True)
class FeedState:
    etag: str
    last_modified: datetime


def _feed_zone(feed: CalendarFeed) -> ZoneInfo:
    if feed.kind == CalendarFeed.Kind.PATIENT:
        assert feed.patient is not None
        return ZoneInfo(feed.patient.timezone)
    if feed.kind == CalendarFeed.Kind.CARE_TEAM:
        assert feed.care_team is not None
        return ZoneInfo(feed.care_team.timezone)
    return ZoneInfo(settings.TIME_ZONE)


def _feed_language(feed: CalendarFeed) -> str:
    if feed.kind == CalendarFeed.Kind.PATIENT:
        assert feed.patient is not None
        return _lang(feed.patient.language)
    assert feed.user is not None
    return _lang(feed.user.language)


def _agg(qs: QuerySet[Any], group: str, expression: Any) -> Subquery:
    """One value per owner, computed in the database (a correlated subquery)."""
    return Subquery(qs.order_by().values(group).annotate(value=expression).values("value")[:1])


def _state_parts(feed: CalendarFeed) -> list[Subquery]:
    if feed.kind == CalendarFeed.Kind.PATIENT:
        items = PlanItem.objects.filter(patient_id=OuterRef("patient_id"))
        appointments = Appointment.objects.filter(patient_id=OuterRef("patient_id"))
        return [
            _agg(items, "patient_id", Max("updated_at")),
            _agg(items, "patient_id", Count("pk")),
            _agg(appointments, "patient_id", Max("updated_at")),
            _agg(appointments, "patient_id", Count("pk")),
        ]
    if feed.kind == CalendarFeed.Kind.NURSE:
        appointments = Appointment.objects.filter(nurse_id=OuterRef("user_id"))
        memberships = StaffMembership.objects.filter(user_id=OuterRef("user_id"))
        return [
            _agg(appointments, "nurse_id", Max("updated_at")),
            _agg(appointments, "nurse_id", Count("pk")),
            _agg(appointments, "nurse_id", Max("patient__updated_at")),
            _agg(memberships, "user_id", Max("created_at")),
            _agg(memberships, "user_id", Count("pk")),
        ]
    items = PlanItem.objects.filter(patient__care_team_id=OuterRef("care_team_id"))
    appointments = Appointment.objects.filter(care_team_id=OuterRef("care_team_id"))
    patients = Patient.objects.filter(care_team_id=OuterRef("care_team_id"))
    return [
        _agg(items, "patient__care_team_id", Max("updated_at")),
        _agg(items, "patient__care_team_id", Count("pk")),
        _agg(appointments, "care_team_id", Max("updated_at")),
        _agg(appointments, "care_team_id", Count("pk")),
        _agg(patients, "care_team_id", Max("updated_at")),
        _agg(patients, "care_team_id", Count("pk")),
    ]


def feed_state(feed: CalendarFeed, *, now: datetime | None = None) -> FeedState:
    """ETag and Last-Modified from one aggregate query over the rows the feed shows."""
    moment = now or timezone.now()
    zone = _feed_zone(feed)
    today = timezone.localtime(moment, zone).date()
    parts = _state_parts(feed)
    row = (
        CalendarFeed.objects.filter(pk=feed.pk)
        .annotate(**{f"part{i}": part for i, part in enumerate(parts)})
        .values_list(*[f"part{i}" for i in range(len(parts))])
        .first()
    )
    values = list(row or ())
    owner_updated = [feed.updated_at]
    if feed.patient is not None:
        owner_updated.append(feed.patient.updated_at)
    midnight = datetime.combine(today, time(0), zone).astimezone(ZoneInfo("UTC"))
    stamps = [v for v in values if isinstance(v, datetime)] + owner_updated + [midnight]
    last_modified = max(stamps).replace(microsecond=0)
    fingerprint = "|".join(
        [
            RENDER_VERSION,
            feed.kind,
            str(feed.pk),
            str(feed.precise_titles),
            _feed_language(feed),
            str(zone),
            today.isoformat(),
            str(history_days()),
            feed.care_team.name if feed.care_team is not None else "",  # the team feed's calendar name
            *[str(v) for v in values],
            *[str(t) for t in owner_updated],
        ]
    )
    return FeedState(etag=hashlib.sha256(fingerprint.encode()).hexdigest()[:32], last_modified=last_modified)


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

    def title(self, patient: Patient, kind: str | None, product: str, dose_mg: object) -> str:
        if self.for_patient:
            return _patient_title(kind, product, dose_mg, self.lang, precise=self.precise)
        return _staff_title(patient, kind, product, dose_mg, self.lang, precise=self.precise)


def _stamp(event: icalendar.Event, *, created: datetime, modified: datetime) -> None:
    event.add("dtstamp", modified)
    event.add("last-modified", modified)
    event.add("created", created)
    event.add("class", "PRIVATE")


def _alarm(title: str, trigger: timedelta) -> icalendar.Alarm:
    alarm = icalendar.Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", title)
    alarm.add("trigger", trigger)
    return alarm


def _item_event(item: PlanItem, patient: Patient, style: _Style, today: date) -> tuple[str, icalendar.Event]:
    first, last = (item.window_start or item.due, item.window_end or item.due)
    words = WORDS[style.lang]
    title = style.title(patient, item.kind, item.product, item.dose_mg)
    event = icalendar.Event()
    event.add("uid", f"planitem-{item.public_id}@carnet")
    _stamp(event, created=item.created_at, modified=item.updated_at)
    event.add("dtstart", first)
    event.add("dtend", last + timedelta(days=1))
    event.add("sequence", max(item.version - 1, 0))
    event.add("summary", title)
    cancelled = item.status == ItemStatus.CANCELLED
    if cancelled:
        description = words["cancelled"]
    elif not style.precise and style.for_patient:
        description = NEUTRAL_DESCRIPTION[style.lang]
    elif first == last:
        description = words["due"].format(due=_day(item.due, style.lang))
    else:
        description = words["window"].format(
            first=_day(first, style.lang), last=_day(last, style.lang), due=_day(item.due, style.lang)
        )
    if item.status == ItemStatus.DONE:
        description = f"{words['done']} {description}"
    event.add("description", description)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "TRANSPARENT")  # a window is not busy time
    if style.for_patient and item.status in OPEN_STATUSES and first >= today:
        for reminder in reminder_leads(patient=patient, kind=item.kind):
            if first - timedelta(days=reminder.days_before) >= today:  # a reminder already past would pop up late
                event.add_component(_alarm(title, _trigger_all_day(reminder)))
    return f"{first.isoformat()}T00:00 {event['uid']}", event


def _appointment_event(
    appointment: Appointment, patient: Patient, zone: ZoneInfo, style: _Style, today: date
) -> tuple[str, icalendar.Event]:
    item = appointment.plan_item
    kind = item.kind if item is not None else None
    product = item.product if item is not None else ""
    dose_mg = item.dose_mg if item is not None else None
    title = style.title(patient, kind, product, dose_mg)
    start = timezone.localtime(appointment.starts_at, zone)
    end = timezone.localtime(appointment.ends_at, zone)
    words = WORDS[style.lang]
    event = icalendar.Event()
    event.add("uid", f"appointment-{appointment.public_id}@carnet")
    _stamp(event, created=appointment.created_at, modified=appointment.updated_at)
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("sequence", appointment.sequence)
    event.add("summary", title)
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
    if lines:
        event.add("description", " ".join(lines))
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    if style.for_patient and appointment.status == Appointment.Status.BOOKED and start.date() >= today:
        for reminder in reminder_leads(patient=patient, kind=kind or ItemKind.INJECTION):
            if start.date() - timedelta(days=reminder.days_before) >= today:
                event.add_component(_alarm(title, _trigger_timed(reminder, start)))
    return f"{start.astimezone(ZoneInfo('UTC')):%Y-%m-%dT%H:%M} {event['uid']}", event


@lru_cache(maxsize=64)
def _vtimezone(tzid: str) -> icalendar.Timezone:
    """The VTIMEZONE icalendar generates for ``tzid`` (what add_missing_timezones adds), built once."""
    return icalendar.Timezone.from_tzid(tzid)


def _calendar(name: str, events: Iterable[tuple[str, icalendar.Event]]) -> bytes:
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", name)
    calendar.add("name", name)
    calendar.add("refresh-interval", TTL, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", icalendar.vDuration(TTL))
    ordered = [event for _key, event in sorted(events, key=lambda pair: pair[0])]
    # A VTIMEZONE for every zone a DATE-TIME names (all-day DATE values name none).
    for tzid in sorted({str(e["DTSTART"].params["TZID"]) for e in ordered if "TZID" in e["DTSTART"].params}):
        calendar.add_component(_vtimezone(tzid))
    for event in ordered:
        calendar.add_component(event)
    return bytes(calendar.to_ical())


# --- the three feeds ------------------------------------------------------------------------


def _patient_feed(feed: CalendarFeed, span: _Span, zone: ZoneInfo) -> bytes:
    patient = feed.patient
    assert patient is not None
    style = _Style(lang=_lang(patient.language), precise=feed.precise_titles, for_patient=True)
    items = list(_items_shown(PlanItem.objects.filter(patient_id=patient.pk), span))
    appointments = list(
        _appointments_shown(Appointment.objects.filter(patient_id=patient.pk), span).select_related("plan_item")
    )
    # An item with a live (booked or done) appointment shows as that appointment, timed.
    covered = {a.plan_item_id for a in appointments if a.status != Appointment.Status.CANCELLED}
    events = [_appointment_event(a, patient, zone, style, span.today) for a in appointments]
    events += [_item_event(i, patient, style, span.today) for i in items if i.pk not in covered]
    return _calendar(WORDS[style.lang]["patient_calendar"], events)


def _nurse_feed(feed: CalendarFeed, span: _Span) -> bytes:
    user = feed.user
    assert user is not None
    style = _Style(lang=_lang(user.language), precise=feed.precise_titles, for_patient=False)
    teams = StaffMembership.objects.filter(user_id=user.pk).values("care_team_id")
    appointments = _appointments_shown(
        Appointment.objects.filter(nurse_id=user.pk, care_team_id__in=Subquery(teams)), span
    ).select_related("plan_item", "patient", "care_team")
    events = [_appointment_event(a, a.patient, ZoneInfo(a.care_team.timezone), style, span.today) for a in appointments]
    return _calendar(WORDS[style.lang]["nurse_calendar"], events)


def _team_feed(feed: CalendarFeed, span: _Span, zone: ZoneInfo) -> bytes:
    team = feed.care_team
    user = feed.user
    assert team is not None and user is not None
    style = _Style(lang=_lang(user.language), precise=feed.precise_titles, for_patient=False)
    appointments = _appointments_shown(Appointment.objects.filter(care_team_id=team.pk), span).select_related(
        "plan_item", "patient"
    )
    booked = Appointment.objects.filter(plan_item_id=OuterRef("pk"), status=Appointment.Status.BOOKED)
    unbooked = (
        PlanItem.objects.filter(patient__care_team_id=team.pk)
        .filter(status__in=[s for s in OPEN_STATUSES if s != ItemStatus.SCHEDULED])
        .filter(~Exists(booked))
        .select_related("patient")
    )
    events = [_appointment_event(a, a.patient, zone, style, span.today) for a in appointments]
    events += [_item_event(i, i.patient, style, span.today) for i in unbooked]
    return _calendar(WORDS[style.lang]["team_calendar"].format(team=team.name), events)


def feed_render(feed: CalendarFeed, *, now: datetime | None = None) -> bytes:
    """The feed's iCalendar bytes; ``feed`` comes with its owner rows (``feeds.feed_lookup``)."""
    zone = _feed_zone(feed)
    today = timezone.localtime(now or timezone.now(), zone).date()
    span = _span(today, zone)
    if feed.kind == CalendarFeed.Kind.PATIENT:
        return _patient_feed(feed, span, zone)
    if feed.kind == CalendarFeed.Kind.NURSE:
        return _nurse_feed(feed, span)
    return _team_feed(feed, span, zone)
