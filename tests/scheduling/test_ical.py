"""iCal feed content: RFC 5545 correctness, read back by icalendar, vobject and recurring-ical-events.

Plan rows are written directly (``PlanItem.objects.create``): these tests are about how stored
rows become calendar events, not about the rules that compute them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
import time_machine
import vobject

from patients.models import Role, StaffMembership, User
from scheduling.appointments import appointment_book, appointment_cancel, appointment_move
from scheduling.feeds import feed_create, feed_update, token_hash
from scheduling.ical import feed_render
from scheduling.ical_state import feed_state
from scheduling.models import Appointment, ItemStatus, PlanItem
from tests.factories import CareTeamFactory, PatientFactory

from .conftest import at

pytestmark = pytest.mark.django_db
UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
_keys = count()


# --- builders shared with test_ical_http --------------------------------------------------


def make_item(patient: Any, **fields: Any) -> PlanItem:
    values: dict[str, Any] = {
        "kind": "injection",
        "protocol": "denosumab_op_60mg_q6m",
        "product": "denosumab",
        "dose_mg": Decimal("60.0"),
        "rule": "OP-01",
        "due": date(2026, 12, 15),
        "window_start": date(2026, 11, 24),
        "window_end": date(2027, 1, 5),
        "status": ItemStatus.SCHEDULED,
    }
    values.update(fields)
    values.setdefault("key", f"{values['kind']}:{next(_keys)}")
    return PlanItem.objects.create(patient=patient, **values)


def make_nurse(team: Any, email: str) -> User:
    user = User.objects.create_user(email, "pw-nurse-789", role=Role.NURSE, language="en")
    StaffMembership.objects.create(user=user, care_team=team, role=Role.NURSE)
    return user


def parse(body: bytes) -> icalendar.Calendar:
    calendar = icalendar.Calendar.from_ical(body)
    assert isinstance(calendar, icalendar.Calendar)
    return calendar


def events_by_uid(body: bytes) -> dict[str, icalendar.Event]:
    return {str(e["UID"]): e for e in parse(body).walk("VEVENT")}


def read_with_vobject(body: bytes) -> dict[str, Any]:
    calendar = vobject.readOne(body.decode("utf-8"))
    return {e.uid.value: e for e in calendar.vevent_list}


def item_uid(item: PlanItem) -> str:
    return f"planitem-{item.public_id}@carnet"


def appt_uid(appointment: Appointment) -> str:
    return f"appointment-{appointment.public_id}@carnet"


def render(feed: Any, day: str = "2026-11-20", hour: int = 9) -> bytes:
    feed.refresh_from_db()
    return feed_render(feed, now=at(day, hour))


@pytest.fixture(autouse=True)
def _clock() -> Any:
    with time_machine.travel(at("2026-11-20", 9), tick=False):
        yield


@pytest.fixture
def patient(team: Any) -> Any:
    return PatientFactory(care_team=team, first_name="Jeanne", last_name="Martin", language="en")


@pytest.fixture
def plan(patient: Any) -> dict[str, PlanItem]:
    """One item of every kind the patient feed shows."""
    return {
        "injection": make_item(patient),
        "calcium_check": make_item(
            patient,
            kind="calcium_check",
            product="",
            dose_mg=None,
            rule="CA-03",
            due=date(2026, 12, 8),
            window_start=date(2026, 12, 1),
            window_end=date(2026, 12, 14),
        ),
        "vitamin_d_dose": make_item(
            patient,
            kind="vitamin_d_dose",
            product="cholecalciferol",
            dose_mg=None,
            rule="VITD-02",
            due=date(2026, 12, 1),
            window_start=None,
            window_end=None,
        ),
        "dental_visit": make_item(
            patient,
            kind="dental_visit",
            product="",
            dose_mg=None,
            rule="DENT-03",
            due=date(2027, 3, 1),
            window_start=None,
            window_end=None,
        ),
        "reevaluation": make_item(
            patient,
            kind="reevaluation",
            product="",
            dose_mg=None,
            rule="REEVAL-01",
            due=date(2027, 6, 1),
            window_start=date(2027, 5, 1),
            window_end=date(2027, 6, 30),
        ),
        "consolidation": make_item(
            patient,
            kind="consolidation",
            product="zoledronic_acid",
            dose_mg=Decimal("5.0"),
            rule="CONS-01",
            due=date(2027, 2, 1),
            window_start=date(2027, 1, 25),
            window_end=date(2027, 2, 8),
        ),
    }


@pytest.fixture
def patient_feed(patient: Any, nurse: Any) -> Any:
    feed, _token = feed_create(kind="patient", patient=patient, by=nurse)
    return feed


# --- parsers agree -----------------------------------------------------------------------


def test_patient_feed_is_read_back_by_icalendar_vobject_and_recurring_ical_events(
    patient_feed: Any, plan: dict[str, PlanItem], nurse: Any
) -> None:
    appt = appointment_book(plan_item=plan["injection"], starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    body = render(patient_feed)
    calendar = parse(body)
    uids = {str(e["UID"]) for e in calendar.walk("VEVENT")}
    expected = {appt_uid(appt)} | {item_uid(i) for k, i in plan.items() if k != "injection"}
    assert uids == expected
    assert set(read_with_vobject(body)) == expected
    # Expanded for December 2026 only: the appointment, the calcium check and the vitamin D dose.
    december = recurring_ical_events.of(calendar).between(date(2026, 12, 1), date(2027, 1, 1))
    assert {str(e["UID"]) for e in december} == {
        appt_uid(appt),
        item_uid(plan["calcium_check"]),
        item_uid(plan["vitamin_d_dose"]),
    }
    assert calendar["VERSION"] == "2.0" and "Carnet" in str(calendar["PRODID"])
    assert calendar["X-WR-CALNAME"] == "Carnet"
    assert b"REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n" in body
    assert b"X-PUBLISHED-TTL:PT1H\r\n" in body


def test_every_event_carries_identity_and_timestamps(patient_feed: Any, plan: dict[str, PlanItem]) -> None:
    for event in parse(render(patient_feed)).walk("VEVENT"):
        for name in ("UID", "DTSTAMP", "LAST-MODIFIED", "CREATED", "SEQUENCE", "DTSTART", "DTEND", "SUMMARY", "STATUS"):
            assert name in event, name
        assert event.decoded("DTSTAMP").tzinfo is not None  # UTC
        assert event.decoded("CREATED") <= event.decoded("LAST-MODIFIED")


def test_unbooked_items_are_all_day_windows_and_appointments_are_zoned(
    patient_feed: Any, plan: dict[str, PlanItem], nurse: Any
) -> None:
    appt = appointment_book(plan_item=plan["calcium_check"], starts_at=at("2026-12-03", 8), nurse=nurse, by=nurse)
    body = render(patient_feed)
    events = events_by_uid(body)
    injection = events[item_uid(plan["injection"])]
    assert injection.decoded("DTSTART") == date(2026, 11, 24)
    assert not isinstance(injection.decoded("DTSTART"), datetime)
    assert injection.decoded("DTEND") == date(2027, 1, 6)  # DTEND is exclusive: the window's last day + 1
    assert injection["TRANSP"] == "TRANSPARENT"
    dose = events[item_uid(plan["vitamin_d_dose"])]
    assert (dose.decoded("DTSTART"), dose.decoded("DTEND")) == (date(2026, 12, 1), date(2026, 12, 2))
    timed = events[appt_uid(appt)]
    assert timed["DTSTART"].params["TZID"] == "Europe/Paris"
    assert timed.decoded("DTSTART") == at("2026-12-03", 8)
    assert timed.decoded("DTEND") - timed.decoded("DTSTART") == timedelta(minutes=30)
    assert item_uid(plan["calcium_check"]) not in events  # booked: shown once, as the appointment
    assert b"DTSTART;VALUE=DATE:20261124" in body
    tzids = [str(tz["TZID"]) for tz in parse(body).walk("VTIMEZONE")]
    assert tzids == ["Europe/Paris"]


def test_appointment_across_dst_change_shows_the_right_local_time(
    patient: Any, patient_feed: Any, nurse: Any, team: Any
) -> None:
    with time_machine.travel(at("2026-10-01", 9), tick=False):
        item = make_item(patient, due=date(2026, 10, 25), window_start=date(2026, 10, 4), window_end=date(2026, 11, 15))
        other = make_item(
            PatientFactory(care_team=team),
            due=date(2026, 10, 25),
            window_start=date(2026, 10, 4),
            window_end=date(2026, 11, 15),
        )
        before = appointment_book(plan_item=other, starts_at=at("2026-10-23", 10), nurse=nurse, by=nurse)
        after = appointment_book(
            plan_item=item, starts_at=at("2026-10-23", 10), nurse=make_nurse(team, "n@x.org"), by=nurse
        )
        # The patient's appointment moves across the change of time (25 October 2026).
        after = appointment_move(appointment=after, starts_at=at("2026-10-27", 10), by=nurse)
        body = feed_render(patient_feed, now=at("2026-10-01", 9))
    event = events_by_uid(body)[appt_uid(after)]
    assert event.decoded("DTSTART").astimezone(UTC) == datetime(2026, 10, 27, 9, 0, tzinfo=UTC)
    assert b"DTSTART;TZID=Europe/Paris:20261027T100000" in body
    vevent = read_with_vobject(body)[appt_uid(after)]
    assert vevent.dtstart.value.astimezone(UTC) == datetime(2026, 10, 27, 9, 0, tzinfo=UTC)
    assert vevent.dtstart.value.astimezone(PARIS).hour == 10
    # The team feed shows both sides of the change, each at 10:00 local.
    team_feed, _ = feed_create(kind="care_team", care_team=team, by=nurse)
    team_events = events_by_uid(feed_render(team_feed, now=at("2026-10-01", 9)))
    assert team_events[appt_uid(before)].decoded("DTSTART").astimezone(UTC) == datetime(2026, 10, 23, 8, tzinfo=UTC)
    assert team_events[appt_uid(after)].decoded("DTSTART").astimezone(UTC) == datetime(2026, 10, 27, 9, tzinfo=UTC)


def test_patient_zone_gets_its_own_vtimezone(team: Any, nurse: Any) -> None:
    patient = PatientFactory(care_team=team, timezone="America/New_York")
    item = make_item(patient)
    appt = appointment_book(
        plan_item=item,
        starts_at=datetime(2026, 12, 10, 9, tzinfo=ZoneInfo("America/New_York")),
        nurse=nurse,
        by=nurse,
    )
    feed, _ = feed_create(kind="patient", patient=patient, by=nurse)
    body = render(feed)
    assert [str(tz["TZID"]) for tz in parse(body).walk("VTIMEZONE")] == ["America/New_York"]
    event = events_by_uid(body)[appt_uid(appt)]
    assert event["DTSTART"].params["TZID"] == "America/New_York"
    assert event.decoded("DTSTART").astimezone(UTC) == datetime(2026, 12, 10, 14, tzinfo=UTC)


# --- revisions and cancellations -----------------------------------------------------------


def test_moved_appointment_keeps_uid_with_higher_sequence(
    patient_feed: Any, plan: dict[str, PlanItem], nurse: Any
) -> None:
    appt = appointment_book(plan_item=plan["injection"], starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    first = events_by_uid(render(patient_feed))[appt_uid(appt)]
    appointment_move(appointment=appt, starts_at=at("2026-12-11", 15), by=nurse)
    second = events_by_uid(render(patient_feed))[appt_uid(appt)]
    assert int(first["SEQUENCE"]) == 0 and int(second["SEQUENCE"]) == 1
    assert second.decoded("DTSTART") == at("2026-12-11", 15)
    assert second.decoded("LAST-MODIFIED") >= first.decoded("LAST-MODIFIED")


def test_plan_item_sequence_follows_its_version(patient_feed: Any, plan: dict[str, PlanItem]) -> None:
    item = plan["injection"]
    assert int(events_by_uid(render(patient_feed))[item_uid(item)]["SEQUENCE"]) == 0
    PlanItem.objects.filter(pk=item.pk).update(version=3, due=date(2026, 12, 20), window_start=date(2026, 11, 29))
    event = events_by_uid(render(patient_feed))[item_uid(item)]
    assert int(event["SEQUENCE"]) == 2
    assert event.decoded("DTSTART") == date(2026, 11, 29)


def test_cancelled_appointment_shows_cancelled_for_30_days_then_leaves(
    patient_feed: Any, plan: dict[str, PlanItem], nurse: Any
) -> None:
    appt = appointment_book(plan_item=plan["injection"], starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    appointment_cancel(appointment=appt, by=nurse, reason="Patient in hospital")
    events = events_by_uid(render(patient_feed))
    assert events[appt_uid(appt)]["STATUS"] == "CANCELLED"
    assert int(events[appt_uid(appt)]["SEQUENCE"]) == 1
    assert not events[appt_uid(appt)].walk("VALARM")  # nothing to remind of
    # The item is unbooked again: its window is back, alongside the cancelled appointment.
    assert events[item_uid(plan["injection"])]["STATUS"] == "CONFIRMED"
    assert appt_uid(appt) in events_by_uid(render(patient_feed, "2026-12-20"))
    assert appt_uid(appt) not in events_by_uid(render(patient_feed, "2026-12-21"))


def test_cancelled_plan_item_is_kept_30_days(patient: Any, patient_feed: Any) -> None:
    item = make_item(patient, status=ItemStatus.CANCELLED, closed_at=at("2026-11-18", 3))
    assert events_by_uid(render(patient_feed))[item_uid(item)]["STATUS"] == "CANCELLED"
    assert item_uid(item) in events_by_uid(render(patient_feed, "2026-12-18"))
    assert item_uid(item) not in events_by_uid(render(patient_feed, "2026-12-19"))


# --- titles, language, reminders -----------------------------------------------------------


def test_titles_are_neutral_by_default_in_the_patients_language(
    patient: Any, patient_feed: Any, plan: dict[str, PlanItem], nurse: Any
) -> None:
    appointment_book(plan_item=plan["injection"], starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    body = render(patient_feed)
    assert {str(e["SUMMARY"]) for e in parse(body).walk("VEVENT")} == {"Carnet: care appointment"}
    for secret in (b"denosumab", b"zoledronic", b"calcium", b"vitamin", b"Martin"):
        assert secret not in body.lower()
    patient.language = "fr"
    patient.save()
    summaries = {str(e["SUMMARY"]) for e in parse(render(patient_feed)).walk("VEVENT")}
    assert summaries == {"Carnet : rendez-vous de soins"}


def test_precise_titles_when_the_patient_opts_in(
    patient: Any, patient_feed: Any, plan: dict[str, PlanItem], nurse: Any
) -> None:
    feed_update(feed=patient_feed, by=nurse, precise_titles=True)
    events = events_by_uid(render(patient_feed))
    assert str(events[item_uid(plan["injection"])]["SUMMARY"]) == "Carnet: injection — denosumab 60 mg"
    assert str(events[item_uid(plan["consolidation"])]["SUMMARY"]) == (
        "Carnet: consolidation treatment — zoledronic acid 5 mg"
    )
    assert str(events[item_uid(plan["calcium_check"])]["SUMMARY"]) == "Carnet: calcium blood test"
    assert "between 2026-11-24 and 2027-01-05" in str(events[item_uid(plan["injection"])]["DESCRIPTION"])


def test_reminders_follow_the_default_lead_times(
    patient: Any, patient_feed: Any, plan: dict[str, PlanItem], nurse: Any
) -> None:
    appt = appointment_book(plan_item=plan["injection"], starts_at=at("2027-01-04", 14), nurse=nurse, by=nurse)
    soon = make_item(patient, due=date(2026, 12, 1), window_start=date(2026, 11, 24), window_end=date(2026, 12, 8))
    events = events_by_uid(render(patient_feed))

    def triggers(uid: str) -> list[timedelta]:
        return sorted(a.decoded("TRIGGER") for a in events[uid].walk("VALARM"))

    # All-day consolidation window (opens 2027-01-25): 14 and 3 days before at 09:00, and 09:00 on the day.
    assert triggers(item_uid(plan["consolidation"])) == [
        timedelta(days=-14, hours=9),
        timedelta(days=-3, hours=9),
        timedelta(hours=9),
    ]
    # A window opening 2026-11-24 seen on 2026-11-20: the 14-day reminder has passed and is left out.
    assert triggers(item_uid(soon)) == [timedelta(days=-3, hours=9), timedelta(hours=9)]
    # Other items: 3 days before and the morning itself.
    assert triggers(item_uid(plan["calcium_check"])) == [timedelta(days=-3, hours=9), timedelta(hours=9)]
    # A 14:00 appointment: 09:00 local 14 and 3 days before, and 09:00 the same morning.
    assert triggers(appt_uid(appt)) == [-timedelta(days=14, hours=5), -timedelta(days=3, hours=5), -timedelta(hours=5)]
    assert all(a["ACTION"] == "DISPLAY" for a in events[appt_uid(appt)].walk("VALARM"))
    # An 08:00 appointment cannot be reminded of at 09:00 the same day: an hour before instead.
    early = appointment_book(plan_item=plan["calcium_check"], starts_at=at("2026-12-02", 8), nurse=nurse, by=nurse)
    events = events_by_uid(render(patient_feed))
    assert triggers(appt_uid(early))[-1] == -timedelta(hours=1)


def test_past_and_closed_items_have_no_reminders(patient: Any, patient_feed: Any) -> None:
    overdue = make_item(
        patient,
        status=ItemStatus.OVERDUE_L1,
        due=date(2026, 11, 1),
        window_start=date(2026, 10, 10),
        window_end=date(2026, 11, 15),
    )
    done = make_item(
        patient,
        status=ItemStatus.DONE,
        closed_at=at("2026-06-01"),
        due=date(2026, 6, 1),
        window_start=None,
        window_end=None,
    )
    events = events_by_uid(render(patient_feed))
    assert not events[item_uid(overdue)].walk("VALARM")
    assert not events[item_uid(done)].walk("VALARM")
    assert "Done." in str(events[item_uid(done)]["DESCRIPTION"])


# --- who sees what ------------------------------------------------------------------------


def test_no_feed_shows_another_patients_event(nurse: Any, team: Any) -> None:
    team_b = CareTeamFactory(name="Oncologie Bordeaux")
    nurse_b = make_nurse(team_b, "nurse-b@example.org")
    alice = PatientFactory(care_team=team, first_name="Alice", last_name="Aubert")
    bruno = PatientFactory(care_team=team_b, first_name="Bruno", last_name="Bertin")
    a_items = [make_item(alice), make_item(alice, kind="calcium_check", status=ItemStatus.DUE, product="")]
    b_items = [make_item(bruno), make_item(bruno, kind="calcium_check", status=ItemStatus.DUE, product="")]
    a_appt = appointment_book(plan_item=a_items[0], starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    b_appt = appointment_book(plan_item=b_items[0], starts_at=at("2026-12-10", 10), nurse=nurse_b, by=nurse_b)
    feeds = {
        "alice": feed_create(kind="patient", patient=alice, by=nurse)[0],
        "bruno": feed_create(kind="patient", patient=bruno, by=nurse_b)[0],
        "nurse_a": feed_create(kind="nurse", user=nurse, by=nurse)[0],
        "nurse_b": feed_create(kind="nurse", user=nurse_b, by=nurse_b)[0],
        "team_a": feed_create(kind="care_team", care_team=team, by=nurse, precise_titles=True)[0],
        "team_b": feed_create(kind="care_team", care_team=team_b, by=nurse_b, precise_titles=True)[0],
    }
    a_uids = {appt_uid(a_appt), *map(item_uid, a_items)}
    b_uids = {appt_uid(b_appt), *map(item_uid, b_items)}
    shown = {name: set(events_by_uid(render(feed))) for name, feed in feeds.items()}
    assert shown["alice"] == {appt_uid(a_appt), item_uid(a_items[1])}
    assert shown["bruno"] == {appt_uid(b_appt), item_uid(b_items[1])}
    assert shown["nurse_a"] == {appt_uid(a_appt)}
    assert shown["nurse_b"] == {appt_uid(b_appt)}
    assert shown["team_a"] == {appt_uid(a_appt), item_uid(a_items[1])}
    assert shown["team_b"] == {appt_uid(b_appt), item_uid(b_items[1])}
    for name in ("alice", "nurse_a", "team_a"):
        assert not shown[name] & b_uids
        assert b"Bertin".upper() not in render(feeds[name]).upper()
    for name in ("bruno", "nurse_b", "team_b"):
        assert not shown[name] & a_uids


def test_nurse_feed_shows_only_their_appointments(patient: Any, nurse: Any, team: Any) -> None:
    colleague = make_nurse(team, "colleague@example.org")
    mine = appointment_book(plan_item=make_item(patient), starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    theirs = appointment_book(
        plan_item=make_item(PatientFactory(care_team=team)), starts_at=at("2026-12-10", 10), nurse=colleague, by=nurse
    )
    make_item(patient, kind="calcium_check", status=ItemStatus.DUE, product="")
    feed, _ = feed_create(kind="nurse", user=nurse, by=nurse)
    body = render(feed)
    assert set(events_by_uid(body)) == {appt_uid(mine)}
    assert appt_uid(theirs) not in events_by_uid(body)
    # Initials only by default, even for staff.
    assert str(events_by_uid(body)[appt_uid(mine)]["SUMMARY"]) == "Injection — J. M."


def test_team_feed_shows_appointments_and_due_items_not_yet_booked(patient: Any, nurse: Any, team: Any) -> None:
    booked = make_item(patient, status=ItemStatus.WINDOW_OPEN)
    due = make_item(patient, kind="calcium_check", status=ItemStatus.DUE, product="", dose_mg=None)
    overdue = make_item(patient, kind="dental_visit", status=ItemStatus.OVERDUE_L1, product="", dose_mg=None)
    far = make_item(patient, status=ItemStatus.SCHEDULED, due=date(2027, 6, 1), window_start=None, window_end=None)
    appt = appointment_book(plan_item=booked, starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    feed, _ = feed_create(kind="care_team", care_team=team, by=nurse, precise_titles=True)
    events = events_by_uid(render(feed))
    assert set(events) == {appt_uid(appt), item_uid(due), item_uid(overdue)}
    assert item_uid(far) not in events and item_uid(booked) not in events
    assert str(events[appt_uid(appt)]["SUMMARY"]) == "Injection — dénosumab 60 mg — Jeanne MARTIN"  # nurse reads French
    assert parse(render(feed))["X-WR-CALNAME"] == f"Carnet — {team.name}"


# --- scale --------------------------------------------------------------------------------


def build_history(patient: Any, nurse: Any, years: int) -> int:
    """Monthly injections, calcium checks and vitamin D over ``years`` years, all done, each with its appointment."""
    start = date(2026, 11, 1)
    items: list[PlanItem] = []
    for month in range(1, years * 12 + 1):
        day = start - timedelta(days=30 * month)
        for kind in ("injection", "calcium_check", "vitamin_d_dose"):
            items.append(
                PlanItem(
                    patient=patient,
                    key=f"{kind}:h{month}",
                    kind=kind,
                    product="denosumab" if kind == "injection" else "",
                    rule="ONC-01",
                    due=day,
                    status=ItemStatus.DONE,
                    closed_at=at(day.isoformat()),
                    version=1 + month % 3,
                )
            )
    PlanItem.objects.bulk_create(items)
    saved = PlanItem.objects.filter(patient=patient, kind="injection", status=ItemStatus.DONE)
    Appointment.objects.bulk_create(
        Appointment(
            care_team_id=patient.care_team_id,
            patient=patient,
            plan_item=i,
            nurse=nurse,
            starts_at=at(i.due.isoformat(), 10),
            ends_at=at(i.due.isoformat(), 11),
            status="done",
        )
        for i in saved
    )
    return len(items)


@pytest.mark.parametrize("years", [1, 10])
def test_query_count_is_constant_whatever_the_history(
    years: int,
    patient: Any,
    plan: dict[str, PlanItem],
    nurse: Any,
    settings: Any,
    django_assert_num_queries: Any,
) -> None:
    settings.CARNET_ICAL_HISTORY_DAYS = 11 * 366  # keep all ten years in the feed
    _feed, token = feed_create(kind="patient", patient=patient, by=nurse)
    appointment_book(plan_item=plan["injection"], starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    rows = build_history(patient, nurse, years)
    feed_state(digest=token_hash(token), now=at("2026-11-20", 9))  # PostgreSQL: the lookup is prepared once
    with django_assert_num_queries(3):  # the feed with its owner and state; plan items; appointments with their items
        state = feed_state(digest=token_hash(token), now=at("2026-11-20", 9))
        assert state is not None
        body = feed_render(state.owner, now=at("2026-11-20", 9))
    # The history is really there: every done month shows (injections as their appointments).
    assert len(parse(body).walk("VEVENT")) == len(plan) + rows


def test_done_history_older_than_the_horizon_leaves_the_feed(
    patient: Any, patient_feed: Any, nurse: Any, settings: Any
) -> None:
    settings.CARNET_ICAL_HISTORY_DAYS = 365
    build_history(patient, nurse, 3)
    events = parse(render(patient_feed)).walk("VEVENT")
    starts = [e.decoded("DTSTART") for e in events]
    oldest = min(s.date() if isinstance(s, datetime) else s for s in starts)
    assert date(2025, 11, 20) <= oldest < date(2026, 1, 1)
    assert len(events) == 11 * 3  # the 11 months since 2025-11-20, three items each


# --- text that needs escaping and folding ---------------------------------------------------------


def test_names_and_reasons_with_nasty_text_read_back_in_every_parser(nurse: Any, team: Any) -> None:
    team.name = "Oncologie, site Nord; salle \\ 2 🩺"
    team.save()
    patient = PatientFactory(care_team=team, first_name="Marie-Hélène, dite « Lénou »", last_name="D'Artagnan; Évêque")
    item = make_item(patient)
    appt = appointment_book(plan_item=item, starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    reason = "Patiente hospitalisée, retour prévu; voir C:\\dossiers\nappeler la fille 📞 — réévaluation dénosumab"
    Appointment.objects.filter(pk=appt.pk).update(out_of_window_reason=reason)
    feed, _ = feed_create(kind="care_team", care_team=team, by=nurse, precise_titles=True)
    body = render(feed)
    summary = "Injection — dénosumab 60 mg — Marie-Hélène, dite « Lénou » D'ARTAGNAN; ÉVÊQUE"
    description = f"Réservé hors fenêtre : {reason}"
    event = events_by_uid(body)[appt_uid(appt)]
    assert (str(event["SUMMARY"]), str(event["DESCRIPTION"])) == (summary, description)
    read = read_with_vobject(body)[appt_uid(appt)]
    assert (read.summary.value, read.description.value) == (summary, description)
    assert vobject.readOne(body.decode()).contents["x-wr-calname"][0].value == f"Carnet — {team.name}"
    for line in body.split(b"\r\n"):
        assert len(line) <= 75
        line.decode("utf-8")  # folds fall between characters
    assert b"\r\n " in body  # the long lines were folded
