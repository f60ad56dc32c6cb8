"""Our RFC 5545 writer against icalendar's: the same content lines, and the same calendars parsed back.

icalendar, vobject and recurring-ical-events are the independent readers. Text is the nasty
kind: commas, semicolons, backslashes, line breaks of every style, and long French titles with
accents and emoji that cross the 75-octet fold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
import vobject
from hypothesis import given
from hypothesis import strategies as st

from scheduling import ical, ical_writer

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")

NASTY = [
    "Rendez-vous, injection; contrôle",
    "a,b;c\\d",
    "trailing backslash \\",
    "ligne 1\nligne 2\r\nligne 3\rligne 4",
    "C:\\Notes\\nouveau",  # icalendar reads a literal \N as a line break; so do we, on purpose
    "Réévaluation du traitement par dénosumab — Hôpital Édouard-Herriot, pavillon K, 3ᵉ étage 🩺💉🦴",
    "é" * 80,
    "💉" * 40,
    "👩🏽‍⚕️ soins " * 9,
    "x" * 62 + "\\," + "y" * 72 + "\\;",  # after "DESCRIPTION:", escape pairs right at both folds
    "x" * 72 + "é,;" * 30,
    "",
]

text_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=300
)


def unfold(body: bytes) -> list[bytes]:
    return re.sub(rb"\r\n[ \t]", b"", body).split(b"\r\n")


def physical_lines(body: bytes) -> list[bytes]:
    assert body.endswith(b"\r\n")
    return body[:-2].split(b"\r\n")


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", NASTY)
def test_text_is_escaped_as_icalendar_escapes_it(value: str) -> None:
    assert ical_writer.text(value) == icalendar.vText(value).to_ical().decode()


@given(text_values)
def test_any_text_is_escaped_as_icalendar_escapes_it(value: str) -> None:
    assert ical_writer.text(value) == icalendar.vText(value).to_ical().decode()


@given(st.integers(min_value=-400 * 86400, max_value=400 * 86400).map(lambda seconds: timedelta(seconds=seconds)))
def test_durations_match_icalendar_and_read_back(delta: timedelta) -> None:
    written = ical_writer.duration(delta)
    assert written == icalendar.vDuration(delta).to_ical().decode()
    assert icalendar.vDuration.from_ical(written) == delta


def test_date_and_date_time_values() -> None:
    assert ical_writer.date_value(date(2027, 1, 5)) == "20270105"
    paris = datetime(2026, 10, 25, 2, 30, 59, 999_999, tzinfo=PARIS)  # the repeated hour, first pass
    assert ical_writer.utc_value(paris) == "20261025T003059Z"
    assert ical_writer.local_value(paris) == "20261025T023059"
    with pytest.raises(ValueError, match="aware"):
        ical_writer.utc_value(datetime(2026, 1, 1))  # naive on purpose


def test_parameter_values_are_quoted_when_the_grammar_needs_it() -> None:
    assert ical_writer.param("Europe/Paris") == "Europe/Paris"
    assert ical_writer.param("a:b;c") == '"a:b;c"'
    with pytest.raises(ValueError, match="quote"):
        ical_writer.param('say "hi"')


def test_a_content_line_cannot_smuggle_a_line_break() -> None:
    writer = ical_writer.Writer()
    with pytest.raises(ValueError, match="line break"):
        writer.add("X-WR-CALDESC", "one\r\nBEGIN:VEVENT")
    writer.add_text("X-WR-CALDESC", "one\r\nBEGIN:VEVENT")  # TEXT is escaped instead
    assert writer.to_ical() == b"X-WR-CALDESC:one\\nBEGIN:VEVENT\r\n"


# --- folding -----------------------------------------------------------------------------------


def check_folding(line: str) -> bytes:
    """Fold ``line`` and check RFC 5545 §3.1 on the result; returns the folded bytes."""
    folded = ical_writer.fold(line.encode())
    pieces = folded.split(b"\r\n")
    for n, piece in enumerate(pieces):
        assert len(piece) <= ical_writer.FOLD_OCTETS, piece
        piece.decode("utf-8")  # each physical line is whole UTF-8: never cut inside a character
        if n:
            assert piece.startswith(b" ") and len(piece) > 1
        run = len(piece) - len(piece.rstrip(b"\\"))
        if n < len(pieces) - 1:
            assert run % 2 == 0, "an escape pair is split across the fold"
    assert b"".join(p[1:] if n else p for n, p in enumerate(pieces)) == line.encode()
    return folded


@pytest.mark.parametrize("value", NASTY)
def test_folds_are_75_octets_on_character_boundaries(value: str) -> None:
    line = f"DESCRIPTION:{ical_writer.text(value)}"
    folded = check_folding(line)
    if len(line.encode()) > ical_writer.FOLD_OCTETS:
        assert b"\r\n " in folded
    else:
        assert folded == line.encode()


@given(text_values)
def test_any_text_folds_and_reads_back_as_icalendar_reads_its_own(value: str) -> None:
    ours = check_folding(f"DESCRIPTION:{ical_writer.text(value)}")
    theirs = icalendar.Event()
    theirs.add("description", value)
    parsed = icalendar.Event.from_ical(b"BEGIN:VEVENT\r\n" + ours + b"\r\nEND:VEVENT\r\n")
    expected = icalendar.Event.from_ical(theirs.to_ical())
    assert str(parsed["DESCRIPTION"]) == str(expected["DESCRIPTION"])
    assert unfold(ours + b"\r\n")[0] == unfold(theirs.to_ical())[1]


# --- whole calendars ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plain:
    """An event as plain data, written by both writers."""

    uid: str
    summary: str
    start: date | datetime
    end: date | datetime
    sequence: int = 0
    description: str | None = None
    status: str = "CONFIRMED"
    transp: str = "OPAQUE"
    alarms: list[tuple[str, timedelta]] = field(default_factory=list)
    created: datetime = datetime(2026, 3, 1, 8, 15, 30, 123_456, tzinfo=UTC)
    modified: datetime = datetime(2026, 11, 20, 7, 59, 1, tzinfo=UTC)


def plain_events() -> list[Plain]:
    events = [
        Plain(
            uid="planitem-0001@carnet",
            summary="Carnet : injection — dénosumab 120 mg",
            start=date(2026, 11, 24),
            end=date(2027, 1, 6),
            sequence=2,
            description="À faire entre le 24/11/2026 et le 05/01/2027 (échéance le 15/12/2026).",
            transp="TRANSPARENT",
            alarms=[("Carnet : injection", timedelta(days=-14, hours=9)), ("Rappel", timedelta(hours=9))],
        ),
        Plain(
            uid="appointment-0002@carnet",
            summary="Injection — Jeanne MARTIN",
            start=datetime(2026, 10, 27, 10, tzinfo=PARIS),  # just after the change of time
            end=datetime(2026, 10, 27, 10, 30, tzinfo=PARIS),
            sequence=1,
            alarms=[("Injection", -timedelta(days=14, hours=5)), ("Injection", -timedelta(hours=1))],
        ),
        Plain(
            uid="appointment-0003@carnet",
            summary="Care appointment",
            start=datetime(2026, 12, 10, 9, tzinfo=NEW_YORK),
            end=datetime(2026, 12, 10, 9, 45, tzinfo=NEW_YORK),
            status="CANCELLED",
            description="Cancelled.",
        ),
        Plain(
            uid="appointment-0004@carnet",
            summary="In UTC",
            start=datetime(2026, 12, 11, 14, tzinfo=UTC),
            end=datetime(2026, 12, 11, 15, tzinfo=UTC),
        ),
    ]
    for n, nasty in enumerate(NASTY):
        events.append(
            Plain(
                uid=f"appointment-nasty-{n}@carnet",
                summary=nasty,
                start=datetime(2027, 1, 1 + n, 8, tzinfo=PARIS),
                end=datetime(2027, 1, 1 + n, 9, tzinfo=PARIS),
                description=f"Réservé hors fenêtre : {nasty}",
                alarms=[(nasty, -timedelta(days=3, hours=1))],
            )
        )
    return events


def ours(name: str, events: list[Plain]) -> bytes:
    return ical.calendar(
        name,
        [
            ical_writer.vevent(
                uid=e.uid,
                summary=e.summary,
                start=e.start,
                end=e.end,
                sequence=e.sequence,
                created=e.created,
                modified=e.modified,
                description=e.description,
                status=e.status,
                transp=e.transp,
                alarms=e.alarms,
            )
            for e in events
        ],
    )


def icalendars(name: str, events: list[Plain]) -> bytes:
    """The same calendar built with icalendar, property by property (what the feed did before)."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", ical.PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", name)
    calendar.add("name", name)
    calendar.add("refresh-interval", ical.TTL, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", icalendar.vDuration(ical.TTL))
    zones = {e.start.tzinfo.key for e in events if isinstance(e.start, datetime) and e.start.tzinfo is not UTC}  # type: ignore[union-attr]
    for tzid in sorted(zones):
        calendar.add_component(icalendar.Timezone.from_tzid(tzid))
    for e in sorted(events, key=lambda e: ical_writer.vevent(**vevent_args(e)).order):
        event = icalendar.Event()
        event.add("uid", e.uid)
        event.add("dtstamp", e.modified)
        event.add("last-modified", e.modified)
        event.add("created", e.created)
        event.add("class", "PRIVATE")
        event.add("dtstart", e.start)
        event.add("dtend", e.end)
        event.add("sequence", e.sequence)
        event.add("summary", e.summary)
        if e.description is not None:
            event.add("description", e.description)
        event.add("status", e.status)
        event.add("transp", e.transp)
        for title, trigger in e.alarms:
            alarm = icalendar.Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", title)
            alarm.add("trigger", trigger)
            event.add_component(alarm)
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def vevent_args(e: Plain) -> dict[str, Any]:
    return {k: getattr(e, k) for k in Plain.__dataclass_fields__}


def semantic(component: Any) -> tuple[Any, ...]:
    """A component as comparable data: its name, each property's parameters and decoded value, its children."""
    properties = []
    for name, value in component.property_items(recursive=False):
        if name in ("BEGIN", "END"):
            continue
        decoded = component.decoded(name) if name not in ("SUMMARY", "DESCRIPTION") else str(component[name])
        properties.append((name, dict(getattr(value, "params", {})), decoded))
    return (component.name, sorted(properties, key=repr), tuple(semantic(c) for c in component.subcomponents))


def test_the_same_events_make_the_same_calendar_as_icalendar() -> None:
    events = plain_events()
    mine = ours("Carnet", events)
    theirs = icalendars("Carnet", events)
    # Unfolded, line for line the same; only the fold points differ (we use all 75 octets).
    assert unfold(mine) == unfold(theirs)
    # Parsed back, the same components, properties, parameters and values.
    assert semantic(icalendar.Calendar.from_ical(mine)) == semantic(icalendar.Calendar.from_ical(theirs))
    for line in physical_lines(mine):
        assert len(line) <= ical_writer.FOLD_OCTETS
        line.decode("utf-8")


def test_nasty_text_reads_back_in_every_parser() -> None:
    events = plain_events()
    body = ours("Carnet — Équipe d'oncologie, site Nord; salle \\ 2 🩺", events)
    normalise = {"\r\n": "\n", "\r": "\n", "\\N": "\n"}

    def expected(value: str) -> str:
        for old, new in normalise.items():
            value = value.replace(old, new)
        return value

    by_uid = {str(e["UID"]): e for e in icalendar.Calendar.from_ical(body).walk("VEVENT")}
    calendar = vobject.readOne(body.decode())
    assert calendar.contents["x-wr-calname"][0].value == "Carnet — Équipe d'oncologie, site Nord; salle \\ 2 🩺"
    read = {e.uid.value: e for e in calendar.vevent_list}
    for e in events:
        assert str(by_uid[e.uid]["SUMMARY"]) == expected(e.summary)
        assert read[e.uid].summary.value == expected(e.summary)
        if e.description is not None:
            assert read[e.uid].description.value == expected(e.description)
        alarms = [str(a["DESCRIPTION"]) for a in by_uid[e.uid].walk("VALARM")]
        assert alarms == [expected(title) for title, _trigger in e.alarms]
        assert by_uid[e.uid].decoded("DTSTART") == e.start
    # Expanded by recurring-ical-events: the timed events land on their instants.
    january = recurring_ical_events.of(icalendar.Calendar.from_ical(body)).between(date(2027, 1, 1), date(2027, 2, 1))
    nasty = {f"appointment-nasty-{n}@carnet" for n in range(len(NASTY))}
    assert {str(e["UID"]) for e in january} == nasty | {"planitem-0001@carnet"}  # a window to 5 January
    assert ical_writer.vevent(**vevent_args(events[1])).tzid == "Europe/Paris"
    assert ical_writer.vevent(**vevent_args(events[3])).tzid is None  # UTC: "Z" form, no VTIMEZONE


def test_an_event_needs_two_dates_or_two_datetimes() -> None:
    with pytest.raises(TypeError):
        ical_writer.vevent(
            uid="x",
            summary="x",
            start=date(2026, 1, 1),
            end=datetime(2026, 1, 2, tzinfo=UTC),
            sequence=0,
            created=datetime(2026, 1, 1, tzinfo=UTC),
            modified=datetime(2026, 1, 1, tzinfo=UTC),
            description=None,
            status="CONFIRMED",
            transp="OPAQUE",
        )
