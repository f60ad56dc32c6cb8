"""A small RFC 5545 writer: content lines, TEXT escaping, value formats and folding.

The feeds emit a handful of property shapes (TEXT, DATE, DATE-TIME in UTC or with a TZID,
DURATION, INTEGER), so they are written as strings directly instead of through icalendar's
typed component tree, which costs about a millisecond per event with its alarms. icalendar
still supplies each VTIMEZONE (built once per zone) and, with vobject and
recurring-ical-events, reads every feed back in the tests.

Properties come out in icalendar's order (its canonical order, then alphabetical) so that,
unfolded, the two writers give the same content lines; only the fold points differ (lines here
use the full 75 octets the RFC allows).

Plain Python, no Django: values in, bytes out. ``vevent`` turns an event's plain values into its
content lines; the feeds (``scheduling.ical``) decide what the values are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import icalendar

FOLD_OCTETS = 75  # RFC 5545 §3.1: lines SHOULD NOT be longer than 75 octets, excluding the line break
# Zone names that are UTC itself: their DATE-TIME values are written in UTC form ("Z"), without TZID.
UTC_ZONES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"})


def text(value: str) -> str:
    """A TEXT value (RFC 5545 §3.3.11): backslash, semicolon and comma escaped, line breaks as ``\\n``.

    Same rules, in the same order, as icalendar's escaping (a literal ``\\N`` is read as a line break).
    """
    if "\\" not in value and ";" not in value and "," not in value and "\n" not in value and "\r" not in value:
        return value
    return (
        value.replace("\\N", "\n")
        .replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def param(value: str) -> str:
    """A parameter value, quoted when it holds a character the grammar reserves (``:``, ``;``, ``,``)."""
    if '"' in value:
        raise ValueError(f"A parameter value cannot hold a double quote: {value!r}")
    return f'"{value}"' if any(c in value for c in ":;,") else value


def date_value(day: date) -> str:
    """A DATE value: ``YYYYMMDD``."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def utc_value(moment: datetime) -> str:
    """A DATE-TIME in UTC form (``YYYYMMDDTHHMMSSZ``), from an aware datetime; seconds, not microseconds."""
    if moment.tzinfo is None:
        raise ValueError("A UTC DATE-TIME needs an aware datetime.")
    m = moment.astimezone(UTC)
    return f"{m.year:04d}{m.month:02d}{m.day:02d}T{m.hour:02d}{m.minute:02d}{m.second:02d}Z"


def local_value(moment: datetime) -> str:
    """A DATE-TIME as wall-clock time (``YYYYMMDDTHHMMSS``), for use with a TZID parameter."""
    m = moment
    return f"{m.year:04d}{m.month:02d}{m.day:02d}T{m.hour:02d}{m.minute:02d}{m.second:02d}"


def duration(delta: timedelta) -> str:
    """A DURATION value (RFC 5545 §3.3.6): ``-P13DT15H``, ``PT1H``, ``P0D``; days are nominal days."""
    sign = ""
    if delta.days < 0:
        sign, delta = "-", -delta
    clock = ""
    if delta.seconds:
        hours, rest = divmod(delta.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        clock = "T"
        if hours:
            clock += f"{hours}H"
        if minutes or (hours and seconds):
            clock += f"{minutes}M"
        if seconds:
            clock += f"{seconds}S"
    if delta.days == 0 and clock:
        return f"{sign}P{clock}"
    return f"{sign}P{delta.days}D{clock}"


def fold(line: bytes) -> bytes:
    """Fold a content line at 75 octets (RFC 5545 §3.1): CRLF and a space before each continuation.

    Never inside a UTF-8 sequence, and never between a backslash and the character it escapes
    (some clients unfold escapes badly); the line ending is not added.
    """
    size = len(line)
    if size <= FOLD_OCTETS:
        return line
    pieces: list[bytes] = []
    start, room = 0, FOLD_OCTETS
    while size - start > room:
        end = start + room
        while line[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte: cut before its lead byte
            end -= 1
        backslashes = 0
        while line[end - 1 - backslashes] == 0x5C and end - 1 - backslashes > start:
            backslashes += 1
        if backslashes % 2:  # the last backslash escapes the next character: keep the pair together
            end -= 1
        pieces.append(line[start:end])
        start, room = end, FOLD_OCTETS - 1  # a continuation line starts with one space
    pieces.append(line[start:])
    return b"\r\n ".join(pieces)


def fold_lines(document: bytes) -> bytes:
    """Every line of ``document`` (CRLF-separated, unfolded) longer than 75 octets, folded."""
    # Split and join: four times faster than a regular expression finding the long lines.
    return b"\r\n".join([fold(line) if len(line) > FOLD_OCTETS else line for line in document.split(b"\r\n")])


class Writer:
    """Content lines in order; ``to_ical`` joins and encodes them once, then folds the long ones.

    A line holds no CR or LF of its own: TEXT values go through ``text``, which escapes them.

    Values are passed already formatted (``text``, ``date_value``, ``utc_value``, …): the writer
    does not guess types, so a reader of the call sites sees exactly what goes on the wire.
    """

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: list[str] = []

    def begin(self, component: str) -> None:
        self.lines.append(f"BEGIN:{component}")

    def end(self, component: str) -> None:
        self.lines.append(f"END:{component}")

    def add(self, name: str, value: str, /, **params: str) -> None:
        """``NAME;PARAM=value:value`` (parameter names written upper case, ``_`` as ``-``)."""
        if params:
            name += "".join(f";{key.upper().replace('_', '-')}={param(v)}" for key, v in params.items())
        line = f"{name}:{value}"
        if "\r" in line or "\n" in line:
            raise ValueError(f"A content line cannot hold a line break: {line!r}")
        self.lines.append(line)

    def add_text(self, name: str, value: str) -> None:
        self.lines.append(f"{name}:{text(value)}")

    def add_block(self, block: bytes) -> None:
        """A component already serialised as folded, CRLF-terminated content lines (a VTIMEZONE).

        Its lines are at most 75 octets, so ``to_ical`` leaves its folds as they are.
        """
        if not block.endswith(b"\r\n"):
            raise ValueError("A block ends with CRLF.")
        self.lines.extend(block.decode("utf-8")[:-2].split("\r\n"))

    def to_ical(self) -> bytes:
        return fold_lines(("\r\n".join(self.lines) + "\r\n").encode("utf-8"))


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarEvent:
    """One VEVENT, serialised: ``order`` sorts the feed (start, then UID), ``tzid`` needs a VTIMEZONE."""

    order: str
    tzid: str | None
    lines: list[str]


def vevent(
    *,
    uid: str,
    summary: str,
    start: date | datetime,
    end: date | datetime,
    sequence: int,
    created: datetime,
    modified: datetime,
    description: str | None,
    status: str,
    transp: str,
    alarms: Iterable[tuple[str, timedelta]] = (),
) -> CalendarEvent:
    """A VEVENT from plain values: all day from dates (``end`` exclusive), timed from aware datetimes.

    A timed event is written in its datetimes' zone (``TZID``, wall-clock time) or, for UTC, in
    UTC form. Properties come in icalendar's order (canonical, then alphabetical), so both
    writers agree line for line. ``alarms`` are DISPLAY alarms: (text, trigger before the start).
    """
    tzid: str | None = None
    if isinstance(start, datetime) and isinstance(end, datetime):
        key = getattr(start.tzinfo, "key", None)
        if key is None or key in UTC_ZONES:
            params, first, last = "", utc_value(start), utc_value(end.astimezone(start.tzinfo))
        else:
            tzid = str(key)
            params, first = _tzid_param(tzid), local_value(start)
            last = local_value(end.astimezone(start.tzinfo))
        order = f"{start.astimezone(UTC):%Y-%m-%dT%H:%M} {uid}"
    elif not isinstance(start, datetime) and not isinstance(end, datetime):
        params, first, last = ";VALUE=DATE", date_value(start), date_value(end)
        order = f"{start.isoformat()}T00:00 {uid}"
    else:
        raise TypeError("An event starts and ends with two dates or two datetimes.")
    stamp = utc_value(modified)
    lines = [
        "BEGIN:VEVENT",
        f"SUMMARY:{text(summary)}",
        f"DTSTART{params}:{first}",
        f"DTEND{params}:{last}",
        f"DTSTAMP:{stamp}",
        f"UID:{text(uid)}",
        f"SEQUENCE:{sequence}",
        "CLASS:PRIVATE",
        f"CREATED:{utc_value(created)}",
    ]
    if description is not None:
        lines.append(f"DESCRIPTION:{text(description)}")
    lines += [f"LAST-MODIFIED:{stamp}", f"STATUS:{status}", f"TRANSP:{transp}"]
    for title, trigger in alarms:
        lines += [
            "BEGIN:VALARM",
            "ACTION:DISPLAY",
            f"DESCRIPTION:{text(title)}",
            f"TRIGGER:{duration(trigger)}",
            "END:VALARM",
        ]
    lines.append("END:VEVENT")
    return CalendarEvent(order=order, tzid=tzid, lines=lines)


@lru_cache(maxsize=64)
def _tzid_param(tzid: str) -> str:
    return f";TZID={param(tzid)}"


@lru_cache(maxsize=64)
def vtimezone(tzid: str) -> bytes:
    """The VTIMEZONE icalendar generates for ``tzid`` (what add_missing_timezones adds), built once."""
    return bytes(icalendar.Timezone.from_tzid(tzid).to_ical())
