"""``/ical/<token>.ics``: secret tokens, 404 for anything unknown, 304, gzip, rate limits."""

from __future__ import annotations

import gzip
import hashlib
from datetime import date
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from backend.errors import CarnetError
from patients.models import Role, StaffMembership, User
from scheduling import feeds, ical, ical_state
from scheduling.appointments import appointment_book, appointment_cancel, appointment_move
from scheduling.feeds import feed_create, feed_revoke, feed_rotate, feed_update, feed_urls
from scheduling.models import ItemStatus, PlanItem
from scheduling.models_feeds import CalendarFeed
from tests.factories import CareTeamFactory, PatientFactory

from .conftest import at
from .test_ical import appt_uid, build_history, events_by_uid, item_uid, make_item, parse, read_with_vobject

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clock_and_cache() -> Any:
    cache.clear()
    with time_machine.travel(at("2026-11-20", 9), tick=True):
        yield
    cache.clear()


@pytest.fixture
def patient(team: Any) -> Any:
    return PatientFactory(care_team=team, language="en")


@pytest.fixture
def item(patient: Any) -> Any:
    return make_item(patient, status=ItemStatus.WINDOW_OPEN)


@pytest.fixture
def token(patient: Any, item: Any, nurse: Any) -> str:
    return feed_create(kind="patient", patient=patient, by=nurse)[1]


def url(token: str) -> str:
    return f"/ical/{token}.ics"


# --- the response ---------------------------------------------------------------------------


def test_feed_response_headers_and_body(client: Client, token: str, item: Any) -> None:
    response = client.get(url(token))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    assert response["Cache-Control"] == "private, max-age=300"
    assert response["ETag"].startswith('W/"') and response["Last-Modified"].endswith("GMT")
    body = response.content
    assert set(events_by_uid(body)) == {item_uid(item)}
    assert set(read_with_vobject(body)) == {item_uid(item)}
    assert client.head(url(token)).status_code == 200
    assert client.post(url(token)).status_code == 405


def test_feed_is_gzipped_for_clients_that_accept_it(client: Client, token: str, item: Any) -> None:
    response = client.get(url(token), HTTP_ACCEPT_ENCODING="gzip")
    assert response["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response["Vary"]
    assert set(events_by_uid(gzip.decompress(response.content))) == {item_uid(item)}


def test_conditional_get_is_304_without_rendering(
    client: Client, token: str, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    first = client.get(url(token))

    def no_render(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("a conditional GET must not render the feed")

    monkeypatch.setattr(ical, "feed_render", no_render)
    with django_assert_num_queries(1):  # the feed lookup and its state, one statement
        again = client.get(url(token), HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert again["ETag"] == first["ETag"]
    assert again["Cache-Control"] == "private, max-age=300"
    assert not again.content
    by_date = client.get(url(token), HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])
    assert by_date.status_code == 304


@pytest.mark.postgres
def test_the_lookup_is_planned_once_per_connection(client: Client, token: str, django_assert_num_queries: Any) -> None:
    """PostgreSQL planned the lookup (five joins, two aggregates) on every poll for five times as
    long as it ran: it is prepared once per connection, then only executed."""
    first = client.get(url(token))
    with django_assert_num_queries(1) as polled:
        again = client.get(url(token), HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert [q["sql"] for q in polled.captured_queries] == [f"EXECUTE carnet_feed_lookup ('{feeds.token_hash(token)}')"]
    with django_assert_num_queries(1):  # no validator: the same statement, and the body kept under its ETag
        assert client.get(url(token)).status_code == 200


def test_unchanged_feed_is_rendered_once(
    client: Client,
    token: str,
    item: Any,
    nurse: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: Any,
) -> None:
    renders: list[bytes] = []
    real = ical.feed_render

    def counting(*args: Any, **kwargs: Any) -> bytes:
        renders.append(real(*args, **kwargs))
        return renders[-1]

    monkeypatch.setattr(ical, "feed_render", counting)
    first = client.get(url(token))
    with django_assert_num_queries(1):  # lookup and state: the body comes from the cache
        second = client.get(url(token))
    assert second.content == first.content and len(renders) == 1
    appt = appointment_book(plan_item=item, starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    third = client.get(url(token))
    assert len(renders) == 2 and appt_uid(appt) in events_by_uid(third.content)


def test_a_change_changes_the_etag(client: Client, token: str, item: Any, nurse: Any) -> None:
    first = client.get(url(token))
    appt = appointment_book(plan_item=item, starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    booked = client.get(url(token), HTTP_IF_NONE_MATCH=first["ETag"])
    assert booked.status_code == 200
    assert set(events_by_uid(booked.content)) == {appt_uid(appt)}
    appointment_move(appointment=appt, starts_at=at("2026-12-11", 10), by=nurse)
    moved = client.get(url(token), HTTP_IF_NONE_MATCH=booked["ETag"])
    assert moved.status_code == 200 and moved["ETag"] != booked["ETag"]
    assert int(events_by_uid(moved.content)[appt_uid(appt)]["SEQUENCE"]) == 1
    # The patient's opt-in to precise titles changes the bytes, so it changes the ETag too.
    feed = CalendarFeed.objects.get(kind="patient")
    feed_update(feed=feed, by=nurse, precise_titles=True)
    precise = client.get(url(token), HTTP_IF_NONE_MATCH=moved["ETag"])
    assert precise.status_code == 200 and b"denosumab" in precise.content


def test_etag_changes_with_the_day(client: Client, token: str) -> None:
    first = client.get(url(token))
    with time_machine.travel(at("2026-11-21", 9), tick=False):
        assert client.get(url(token), HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200


def _revalidate(client: Client, token: str, etag: str) -> Any:
    """A conditional GET; returns the response (304 when nothing shown changed)."""
    return client.get(url(token), HTTP_IF_NONE_MATCH=etag)


def test_etag_follows_everything_a_patient_feed_shows(
    client: Client, token: str, patient: Any, item: Any, nurse: Any
) -> None:
    """Each change a patient's calendar would show gives a new ETag and a body that shows it."""
    etag = client.get(url(token))["ETag"]

    def changed() -> bytes:
        nonlocal etag
        response = _revalidate(client, token, etag)
        assert response.status_code == 200, "the ETag did not change"
        assert response["ETag"] != etag
        etag = response["ETag"]
        assert _revalidate(client, token, etag).status_code == 304  # and is stable once changed
        return bytes(response.content)

    assert _revalidate(client, token, etag).status_code == 304
    # A re-plan moves the item (new dates, version): the rows' updated_at moves.
    PlanItem.objects.filter(pk=item.pk).update(
        due=date(2026, 12, 20), window_start=date(2026, 12, 1), version=2, updated_at=timezone.now()
    )
    body = changed()
    assert events_by_uid(body)[item_uid(item)].decoded("DTSTART") == date(2026, 12, 1)
    assert int(events_by_uid(body)[item_uid(item)]["SEQUENCE"]) == 1
    # A new item appears.
    added = make_item(patient, kind="calcium_check", product="", dose_mg=None, status=ItemStatus.DUE)
    assert item_uid(added) in events_by_uid(changed())
    # A status change (done): the item leaves the reminders and says so.
    PlanItem.objects.filter(pk=added.pk).update(
        status=ItemStatus.DONE, closed_at=timezone.now(), updated_at=timezone.now()
    )
    assert "Done." in str(events_by_uid(changed())[item_uid(added)]["DESCRIPTION"])
    # Booked, then cancelled: the appointment, then STATUS:CANCELLED.
    appt = appointment_book(plan_item=item, starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    assert appt_uid(appt) in events_by_uid(changed())
    appointment_cancel(appointment=appt, by=nurse, reason="Patient away")
    assert events_by_uid(changed())[appt_uid(appt)]["STATUS"] == "CANCELLED"
    # The patient's language and time zone (titles; appointment times and VTIMEZONE).
    patient.language = "fr"
    patient.save()
    assert b"Carnet : rendez-vous de soins" in changed()
    patient.timezone = "America/New_York"
    patient.save()
    assert b"TZID:America/New_York" in changed()


def test_staff_feeds_revalidate_in_two_queries_and_follow_their_rows(
    client: Client, patient: Any, item: Any, nurse: Any, team: Any, django_assert_num_queries: Any
) -> None:
    appt = appointment_book(plan_item=item, starts_at=at("2026-12-10", 10), nurse=nurse, by=nurse)
    _nurse_feed, nurse_token = feed_create(kind="nurse", user=nurse, by=nurse)
    _team_feed, team_token = feed_create(kind="care_team", care_team=team, by=nurse, precise_titles=True)
    etags = {t: client.get(url(t))["ETag"] for t in (nurse_token, team_token)}
    for staff_token, etag in etags.items():
        with django_assert_num_queries(2):  # the lookup, then the staff feed's own aggregates
            assert _revalidate(client, staff_token, etag).status_code == 304
    # Staff titles name the patient: renaming the patient changes both feeds.
    patient.last_name = "Durand"
    patient.save()
    for staff_token, etag in etags.items():
        response = _revalidate(client, staff_token, etag)
        assert response.status_code == 200 and response["ETag"] != etag
        etags[staff_token] = response["ETag"]
    assert "DURAND" in str(events_by_uid(client.get(url(team_token)).content)[appt_uid(appt)]["SUMMARY"])
    # A moved appointment changes both; a new due item shows in the team feed only.
    appointment_move(appointment=appt, starts_at=at("2026-12-11", 10), by=nurse)
    for staff_token, etag in etags.items():
        response = _revalidate(client, staff_token, etag)
        assert response.status_code == 200
        etags[staff_token] = response["ETag"]
    due = make_item(patient, kind="calcium_check", product="", dose_mg=None, status=ItemStatus.DUE)
    assert _revalidate(client, nurse_token, etags[nurse_token]).status_code == 304
    response = _revalidate(client, team_token, etags[team_token])
    assert response.status_code == 200 and item_uid(due) in events_by_uid(response.content)
    # The team's name is the team feed's calendar name.
    etags[team_token] = response["ETag"]
    team.name = "Rhumatologie Lyon-Nord"
    team.save()
    response = _revalidate(client, team_token, etags[team_token])
    assert response.status_code == 200 and parse(response.content)["X-WR-CALNAME"] == "Carnet — Rhumatologie Lyon-Nord"


def test_ten_year_feed_over_http_costs_the_same_queries(
    client: Client, patient: Any, token: str, nurse: Any, settings: Any, django_assert_num_queries: Any
) -> None:
    settings.CARNET_ICAL_HISTORY_DAYS = 11 * 366
    build_history(patient, nurse, 10)
    with django_assert_num_queries(3):  # lookup and state (with what rendering needs), plan items, appointments
        response = client.get(url(token))
    assert len(parse(response.content).walk("VEVENT")) == 1 + 360


# --- tokens ---------------------------------------------------------------------------------


def test_token_is_long_random_and_stored_hashed(patient: Any, nurse: Any) -> None:
    feed, raw = feed_create(kind="patient", patient=patient, by=nurse)
    assert len(raw) >= 43  # token_urlsafe(32): 256 bits
    assert feed.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    stored = CalendarFeed.objects.filter(pk=feed.pk).values()[0]
    assert raw not in {str(v) for v in stored.values()}
    assert "token_hash" not in {f.name for f in CalendarFeed.history.model._meta.fields}  # type: ignore[attr-defined]
    _feed2, raw2 = feed_create(kind="nurse", user=nurse, by=nurse)
    assert raw2 != raw


def test_rotated_token_old_url_is_404_at_once(client: Client, token: str, nurse: Any) -> None:
    assert client.get(url(token)).status_code == 200
    feed = CalendarFeed.objects.get(kind="patient")
    rotated, new_token = feed_rotate(feed=feed, by=nurse)
    assert rotated.public_id == feed.public_id and rotated.rotated_at is not None
    assert client.get(url(token)).status_code == 404
    assert client.get(url(token), HTTP_IF_NONE_MATCH="*").status_code == 404
    assert client.get(url(new_token)).status_code == 200


def test_revoked_token_is_404(client: Client, token: str, nurse: Any) -> None:
    feed = CalendarFeed.objects.get(kind="patient")
    feed_revoke(feed=feed, by=nurse)
    response = client.get(url(token))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    with pytest.raises(CarnetError) as exc:
        feed_rotate(feed=feed, by=nurse)
    assert exc.value.code == "revoked"
    # A new feed may be created once the old one is revoked.
    assert feed_create(kind="patient", patient=feed.patient, by=nurse)[0].pk != feed.pk


def test_unknown_token_does_the_same_work_as_a_known_one(
    client: Client, token: str, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    compared: list[tuple[str, str]] = []
    real = ical_state.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    # The lookup with the feed's state: one statement for a hit and for a miss, both compared.
    monkeypatch.setattr(ical_state.hmac, "compare_digest", spy)
    with django_assert_num_queries(1):
        assert ical_state.feed_state(digest=feeds.token_hash(token)) is not None
    with django_assert_num_queries(1):
        assert ical_state.feed_state(digest=feeds.token_hash(token[:-1] + "x")) is None
    assert len(compared) == 2 and compared[1][0] == ical_state.NO_FEED_HASH  # a miss: against a dummy hash
    for bad in ("nope", "a" * 500, "%E2%82%AC"):
        assert client.get(url(bad)).status_code == 404


def test_feed_urls_offer_https_and_webcal(token: str, settings: Any) -> None:
    settings.SITE_URL = "https://carnet.example.org/"
    assert feed_urls(token) == {
        "https": f"https://carnet.example.org/ical/{token}.ics",
        "webcal": f"webcal://carnet.example.org/ical/{token}.ics",
    }


def test_one_live_feed_per_owner(patient: Any, nurse: Any, token: str) -> None:
    with pytest.raises(CarnetError) as exc:
        feed_create(kind="patient", patient=patient, by=nurse)
    assert (exc.value.code, exc.value.status) == ("feed_exists", 409)


def test_who_may_create_which_feed(patient: Any, nurse: Any, team: Any) -> None:
    outsider = User.objects.create_user("out@example.org", "pw-out-123456", role=Role.NURSE)
    StaffMembership.objects.create(user=outsider, care_team=CareTeamFactory(), role=Role.NURSE)
    patient_user = User.objects.create_user("jeanne@example.org", "pw-patient-1")
    patient.user = patient_user
    patient.save()
    for kwargs in (
        {"kind": "patient", "patient": patient},
        {"kind": "nurse", "user": nurse},
        {"kind": "care_team", "care_team": team},
    ):
        with pytest.raises(CarnetError) as exc:
            feed_create(by=outsider, **kwargs)
        assert exc.value.status == 403
    assert feed_create(kind="patient", patient=patient, by=patient_user)[0].created_by == patient_user
    with pytest.raises(CarnetError):
        feed_create(kind="nurse", user=patient_user, by=patient_user)  # patients have no nurse feed
    assert not CalendarFeed.objects.filter(kind__in=["nurse", "care_team"]).exists()


def test_staff_feed_stops_when_the_subscriber_leaves_the_team(client: Client, nurse: Any, team: Any, item: Any) -> None:
    _feed, raw = feed_create(kind="care_team", care_team=team, by=nurse)
    assert client.get(url(raw)).status_code == 200
    StaffMembership.objects.filter(user=nurse, care_team=team).delete()
    assert client.get(url(raw)).status_code == 404


def test_deactivated_nurse_feed_is_404(client: Client, nurse: Any) -> None:
    _feed, raw = feed_create(kind="nurse", user=nurse, by=nurse)
    assert client.get(url(raw)).status_code == 200
    User.objects.filter(pk=nurse.pk).update(is_active=False)
    assert client.get(url(raw)).status_code == 404


# --- rate limits ----------------------------------------------------------------------------


def test_rate_limited_per_token_across_addresses(client: Client, token: str, settings: Any) -> None:
    settings.CARNET_ICAL_RATE_LIMIT = 3
    for n in range(3):
        assert client.get(url(token), REMOTE_ADDR=f"10.0.0.{n}").status_code == 200
    limited = client.get(url(token), REMOTE_ADDR="10.0.0.99")
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited["Content-Type"] == "application/problem+json"


def test_rate_limited_per_address_across_tokens(client: Client, token: str, settings: Any) -> None:
    settings.CARNET_ICAL_RATE_LIMIT = 3
    for n in range(3):
        assert client.get(url(f"guess-{n}"), REMOTE_ADDR="192.0.2.7").status_code == 404
    assert client.get(url(token), REMOTE_ADDR="192.0.2.7").status_code == 429
    assert client.get(url(token), REMOTE_ADDR="192.0.2.8").status_code == 200


def test_limit_resets_after_the_window(client: Client, token: str, settings: Any) -> None:
    settings.CARNET_ICAL_RATE_LIMIT = 1
    with time_machine.travel(at("2026-11-20", 10), tick=False):
        assert client.get(url(token)).status_code == 200
        assert client.get(url(token)).status_code == 429
    with time_machine.travel(at("2026-11-20", 10).replace(minute=1), tick=False):
        assert client.get(url(token)).status_code == 200


@pytest.mark.redis
def test_rate_limit_on_redis_counts_in_one_round_trip(
    client: Client, token: str, settings: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the shared Redis cache (production), both counters cost one pipelined round trip."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": "test-ical-rate",
        }
    }
    from django.core.cache import caches

    caches["default"].clear()
    settings.CARNET_ICAL_RATE_LIMIT = 3
    client_class = type(feeds._redis_client(caches["default"]))
    executed: list[int] = []
    real_pipeline = client_class.pipeline

    def counting_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        pipeline = real_pipeline(self, *args, **kwargs)
        real_execute = pipeline.execute

        def execute(*a: Any, **k: Any) -> Any:
            executed.append(len(pipeline.command_stack))
            return real_execute(*a, **k)

        pipeline.execute = execute
        return pipeline

    monkeypatch.setattr(client_class, "pipeline", counting_pipeline)
    with time_machine.travel(at("2026-11-20", 10), tick=False):
        for n in range(3):
            assert client.get(url(token), REMOTE_ADDR=f"10.0.0.{n}").status_code == 200
        assert client.get(url(token), REMOTE_ADDR="10.0.0.99").status_code == 429
        assert client.get(url("guess"), REMOTE_ADDR="10.0.0.0").status_code == 404  # its own IP count: 2
        redis = feeds._redis_client(caches["default"])
        counts = sorted(int(redis.get(key)) for key in redis.keys("*ical-rate:token:*"))
        assert counts == [1, 4]  # the guess once; the feed's token four times (the refused one too)
    assert executed == [4] * 5  # SET NX + INCR per counter, one round trip per request
    with time_machine.travel(at("2026-11-20", 10).replace(minute=1), tick=False):
        assert client.get(url(token), REMOTE_ADDR="10.0.0.99").status_code == 200  # a new window
    caches["default"].clear()


def test_trusted_proxy_address_is_the_client(client: Client, token: str, settings: Any) -> None:
    settings.CARNET_ICAL_RATE_LIMIT = 2
    settings.CARNET_TRUSTED_PROXIES = 1
    proxy = "172.16.0.1"
    assert client.get(url("x1"), REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 404
    assert client.get(url("x2"), REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 404
    assert client.get(url("x3"), REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 429
    # Another client behind the same proxy has its own count.
    assert client.get(url(token), REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 200
