#!/usr/bin/env python
"""iCal: a patient feed with ten years of history, rendered and on the 304 path.

    python bench/bench_ical.py --runs 30

A patient on denosumab 120 mg every 4 weeks for ten years: ~130 doses, one done plan item and
one done appointment per dose (what ten years of service leave behind), plus the current plan
(``plans_sync_batch``). Timed, each over ``--runs`` requests:

- ``feed``: ``GET /ical/<token>.ics`` through the view (token lookup, ETag state, rendering,
  gzip), with the rendered-body cache emptied before each request, so every run renders;
- ``304``: the same GET with ``If-None-Match`` (never renders);
- ``render``: ``scheduling.ical.feed_render`` alone (reads the rows, writes the calendar);
- ``writer``: our writer alone (``ical_writer.vevent``, ``ical.calendar``) from the plain data below.

Reference: icalendar serialising the same events (same calendar properties, VTIMEZONE and
alarms) from plain data prepared beforehand: what the library alone costs. Ratio = ours /
reference. Targets: feed < 20 ms, 304 < 2 ms, render ratio ≤ 1.5. The feed shows done items of
the last ``CARNET_ICAL_HISTORY_DAYS`` (730 by default); ``all ten years`` renders with the whole
history shown (and its reference serialises all of it).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, median, ratio_of, repeat, report, setup_django

FEED_TARGET_MS = 20.0
NOT_MODIFIED_TARGET_MS = 2.0
RATIO_TARGET = 1.5
TEAM = "Bench iCal team"


def ten_year_patient(*, years: int = 10) -> tuple[Any, str]:
    """A patient with ``years`` of monthly injections, their done items and appointments; (feed, token)."""
    from django.db import transaction
    from django.utils import timezone

    from patients.models import CareTeam, DoseRecord, Patient, Product, Protocol, Route, TreatmentCourse
    from scheduling.feeds import token_hash
    from scheduling.models import Appointment, CalendarFeed, ItemStatus, PlanItem
    from scheduling.services import plans_sync_batch

    team, _ = CareTeam.objects.get_or_create(name=TEAM, defaults={"timezone": "Europe/Paris"})
    token = f"bench-ical-token-{years}y-000000000000000000000000000000"
    digest = token_hash(token)
    feed = CalendarFeed.objects.filter(token_hash=digest).select_related("patient", "user", "care_team").first()
    if feed is not None:
        return feed, token
    tz = timezone.get_default_timezone()
    today = timezone.localdate()
    start = today - timedelta(days=365 * years)
    with transaction.atomic():
        patient = Patient.objects.create(
            care_team=team,
            first_name="Ical",
            last_name=f"Ten{years}",
            birth_date=date(1956, 3, 1),
            sex="F",
            language="fr",
            timezone="Europe/Paris",
        )
        course = TreatmentCourse.objects.create(
            patient=patient, protocol=Protocol.DENOSUMAB_ONCO, indication="oncology", start_date=start
        )
        days = []
        day = start
        while day < today - timedelta(days=3):
            days.append(day)
            day += timedelta(days=28)
        now = timezone.now()
        DoseRecord.objects.bulk_create(
            [
                DoseRecord(
                    patient=patient,
                    course=course,
                    product=Product.DENOSUMAB,
                    dose_value=Decimal(120),
                    dose_unit="mg",
                    route=Route.SC,
                    given_at=datetime.combine(d, time(10), tz),
                    given_on=d,
                    injection_site="abdomen",
                    lot_number="DMB12345A",
                )
                for d in days
            ]
        )
        items = PlanItem.objects.bulk_create(
            [
                PlanItem(
                    patient=patient,
                    course=course,
                    key=f"history:injection:{course.pk}:{n}",
                    kind="injection",
                    protocol=Protocol.DENOSUMAB_ONCO,
                    product="denosumab",
                    dose_mg=Decimal(120),
                    ordinal=n,
                    rule="ONC-01",
                    due=d,
                    window_start=d - timedelta(days=3),
                    window_end=d + timedelta(days=3),
                    reminder_on=d - timedelta(days=7),
                    status=ItemStatus.DONE,
                    closed_at=now,
                )
                for n, d in enumerate(days)
            ]
        )
        Appointment.objects.bulk_create(
            [
                Appointment(
                    care_team=team,
                    patient=patient,
                    plan_item=item,
                    starts_at=datetime.combine(item.due, time(9, 30), tz),
                    ends_at=datetime.combine(item.due, time(10), tz),
                    status=Appointment.Status.DONE,
                )
                for item in items
            ]
        )
        plans_sync_batch([patient])
        feed = CalendarFeed.objects.create(kind=CalendarFeed.Kind.PATIENT, patient=patient, token_hash=digest)
    feed = CalendarFeed.objects.select_related("patient", "user", "care_team").get(pk=feed.pk)
    return feed, token


def plain_events(feed: Any) -> list[dict[str, Any]]:
    """The feed's events as plain data, ``ical_writer.vevent``'s arguments (read once, outside the timing)."""
    import icalendar

    from scheduling import ical

    parsed = icalendar.Calendar.from_ical(ical.feed_render(feed))
    events = []
    for event in parsed.walk("VEVENT"):
        events.append(
            {
                "uid": str(event["UID"]),
                "summary": str(event["SUMMARY"]),
                "start": event["DTSTART"].dt,
                "end": event["DTEND"].dt,
                "sequence": int(event["SEQUENCE"]),
                "created": event["CREATED"].dt,
                "modified": event["LAST-MODIFIED"].dt,
                "description": str(event["DESCRIPTION"]) if "DESCRIPTION" in event else None,
                "status": str(event["STATUS"]),
                "transp": str(event["TRANSP"]),
                "alarms": [(str(a["DESCRIPTION"]), a["TRIGGER"].dt) for a in event.walk("VALARM")],
            }
        )
    return events


def reference_render(events: list[dict[str, Any]], name: str = "Carnet") -> bytes:
    """icalendar alone: the same calendar (properties, VTIMEZONE, alarms) from plain data."""
    import icalendar

    from scheduling import ical

    calendar = icalendar.Calendar()
    calendar.add("prodid", ical.PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", name)
    calendar.add("name", name)
    calendar.add("refresh-interval", ical.TTL, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", icalendar.vDuration(ical.TTL))
    zones = {getattr(e["start"].tzinfo, "key", None) for e in events if isinstance(e["start"], datetime)}
    for tzid in sorted(z for z in zones if z is not None and z != "UTC"):
        calendar.add_component(_vtimezone(tzid))
    for data in events:
        event = icalendar.Event()
        event.add("uid", data["uid"])
        event.add("dtstamp", data["modified"])
        event.add("last-modified", data["modified"])
        event.add("created", data["created"])
        event.add("class", "PRIVATE")
        event.add("dtstart", data["start"])
        event.add("dtend", data["end"])
        event.add("sequence", data["sequence"])
        event.add("summary", data["summary"])
        if data["description"] is not None:
            event.add("description", data["description"])
        event.add("status", data["status"])
        event.add("transp", data["transp"])
        for description, trigger in data["alarms"]:
            alarm = icalendar.Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", description)
            alarm.add("trigger", trigger)
            event.add_component(alarm)
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def writer_render(events: list[dict[str, Any]], name: str = "Carnet") -> bytes:
    """Our writer alone: the same calendar from the same plain data."""
    from scheduling import ical, ical_writer

    return ical.calendar(name, [ical_writer.vevent(**data) for data in events])


def _unfold(body: bytes) -> list[bytes]:
    return re.sub(rb"\r\n[ \t]", b"", body).split(b"\r\n")


_TZ: dict[str, Any] = {}


def _vtimezone(tzid: str) -> Any:
    import icalendar

    if tzid not in _TZ:
        _TZ[tzid] = icalendar.Timezone.from_tzid(tzid)
    return _TZ[tzid]


def run(*, runs: int, command: str = "", years: int = 10) -> list[Figure]:
    from django.conf import settings
    from django.core.cache import cache
    from django.test import RequestFactory

    from scheduling import ical
    from scheduling.feeds import ical_feed

    settings.CARNET_ICAL_RATE_LIMIT = 10**9  # the bench is one client polling hard, on purpose
    feed, token = ten_year_patient(years=years)
    factory = RequestFactory()
    path = f"/ical/{token}.ics"

    def get() -> Any:
        response = ical_feed(factory.get(path, HTTP_ACCEPT_ENCODING="gzip"), token=token)
        assert response.status_code == 200, response.status_code
        return response

    first = get()
    etag = first["ETag"]

    def conditional() -> None:
        response = ical_feed(factory.get(path, HTTP_IF_NONE_MATCH=etag), token=token)
        assert response.status_code == 304, response.status_code

    feed_ms = [1000 * s for s in repeat(get, runs=runs, warmup=2, setup=cache.clear)]
    not_modified_ms = [1000 * s for s in repeat(conditional, runs=runs, warmup=2)]
    render_ms = [1000 * s for s in repeat(lambda: ical.feed_render(feed), runs=runs, warmup=2)]
    events = plain_events(feed)
    # The three write the same calendar: the feed's bytes, and icalendar's lines once unfolded.
    assert writer_render(events) == ical.feed_render(feed)
    assert _unfold(reference_render(events)) == _unfold(writer_render(events))
    reference_ms = [1000 * s for s in repeat(lambda: reference_render(events), runs=runs, warmup=2)]
    writer_ms = [1000 * s for s in repeat(lambda: writer_render(events), runs=runs, warmup=2)]
    settings.CARNET_ICAL_HISTORY_DAYS = 365 * years + 30
    all_events = plain_events(feed)
    full_ms = [1000 * s for s in repeat(lambda: ical.feed_render(feed), runs=runs, warmup=1)]
    full_reference_ms = [1000 * s for s in repeat(lambda: reference_render(all_events), runs=runs, warmup=1)]
    del settings.CARNET_ICAL_HISTORY_DAYS
    scale = f"{years} years of history, {len(events)} events shown ({len(all_events)} with all history)"
    reference = "icalendar from plain data"
    render_ratio = ratio_of(median(render_ms), median(reference_ms))
    writer_ratio = ratio_of(median(writer_ms), median(reference_ms))
    full_ratio = ratio_of(median(full_ms), median(full_reference_ms))
    return [
        Figure(
            bench="ical",
            name="feed GET (renders)",
            unit="ms",
            median=median(feed_ms),
            target=f"< {FEED_TARGET_MS:.0f} ms",
            met=median(feed_ms) < FEED_TARGET_MS,
            runs=runs,
            reference=reference,
            reference_median=median(reference_ms),
            ratio=ratio_of(median(feed_ms), median(reference_ms)),
            scale=scale,
            command=command,
            notes="through the view: rate limit, lookup and state, owner rows, plan rows, rendering, gzip",
            extra={"bytes": len(first.content), "gzip": first.get("Content-Encoding", "")},
        ),
        Figure(
            bench="ical",
            name="feed GET 304",
            unit="ms",
            median=median(not_modified_ms),
            target=f"< {NOT_MODIFIED_TARGET_MS:.0f} ms",
            met=median(not_modified_ms) < NOT_MODIFIED_TARGET_MS,
            runs=runs,
            scale=scale,
            command=command,
            notes="through the view: rate limit, then one statement (token lookup and ETag state)",
        ),
        Figure(
            bench="ical",
            name="feed_render",
            unit="ms",
            median=median(render_ms),
            target=f"< {FEED_TARGET_MS:.0f} ms",
            met=median(render_ms) < FEED_TARGET_MS,
            runs=runs,
            reference=reference,
            reference_median=median(reference_ms),
            ratio=render_ratio,
            ratio_target=f"≤ {RATIO_TARGET}",
            ratio_met=render_ratio <= RATIO_TARGET,
            scale=scale,
            command=command,
            notes="reads the plan rows (two queries) and writes the calendar; the reference only writes",
        ),
        Figure(
            bench="ical",
            name="writer from plain data",
            unit="ms",
            median=median(writer_ms),
            target=f"< {FEED_TARGET_MS:.0f} ms",
            met=median(writer_ms) < FEED_TARGET_MS,
            runs=runs,
            reference=reference,
            reference_median=median(reference_ms),
            ratio=writer_ratio,
            ratio_target=f"≤ {RATIO_TARGET}",
            ratio_met=writer_ratio <= RATIO_TARGET,
            scale=scale,
            command=command,
            notes="ical_writer.vevent + ical.calendar against icalendar, the same events from the same plain data",
        ),
        Figure(
            bench="ical",
            name="feed_render, all ten years shown",
            unit="ms",
            median=median(full_ms),
            target=f"< {FEED_TARGET_MS:.0f} ms",
            met=median(full_ms) < FEED_TARGET_MS,
            runs=runs,
            reference=reference,
            reference_median=median(full_reference_ms),
            ratio=full_ratio,
            ratio_target=f"≤ {RATIO_TARGET}",
            ratio_met=full_ratio <= RATIO_TARGET,
            scale=scale,
            command=command,
            extra={"events": len(all_events)},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    setup_django()
    report("ical", run(runs=args.runs, command=f"python bench/bench_ical.py --runs {args.runs}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
