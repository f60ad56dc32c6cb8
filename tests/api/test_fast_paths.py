"""Two savings on every authenticated request, each checked against what it replaces: the
throttles' packed history (``backend.throttling``) against DRF's own throttles, and the auth
query run on a kept psycopg cursor (``backend.prepared.Prepared.fetchone``) against Django's
cursor."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import caches
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework import throttling as drf

from backend import throttling
from tests.api.conftest import World
from tests.api.test_auth import bearer, login


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class _User:
    is_authenticated = True
    pk = 7


class _Request:
    user = _User()
    META = {"REMOTE_ADDR": "127.0.0.1"}


REQUEST: Any = _Request()  # what the throttles read: the user and META
VIEW: Any = None


def _throttle(cls: type[drf.SimpleRateThrottle], rate: str, clock: _Clock) -> Any:
    throttle: Any = cls()  # rate, num_requests, duration and timer: set per instance
    throttle.rate = rate
    throttle.num_requests, throttle.duration = throttle.parse_rate(rate)
    throttle.timer = clock
    return throttle


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from(["1/s", "3/s", "5/min", "20/min"]),
    steps=st.lists(st.floats(min_value=0, max_value=25, allow_nan=False), min_size=1, max_size=60),
)
def test_the_packed_throttle_decides_and_waits_as_drfs(rate: str, steps: list[float]) -> None:
    """The same requests at the same instants: the same allowed or refused, the same Retry-After."""
    caches["default"].clear()
    clock = _Clock()
    for step in steps:
        clock.now += step
        drfs = _throttle(drf.UserRateThrottle, rate, clock)
        ours = _throttle(throttling.UserRateThrottle, rate, clock)
        allowed = drfs.allow_request(REQUEST, VIEW)
        assert ours.allow_request(REQUEST, VIEW) == allowed
        if not allowed:
            assert ours.wait() == drfs.wait()
    caches["default"].clear()


def test_the_packed_throttle_counts_at_the_window_edge_as_drf() -> None:
    """A request exactly ``duration`` old is out of the window (DRF's ``<=``)."""
    caches["default"].clear()
    clock = _Clock()
    for cls in (drf.UserRateThrottle, throttling.UserRateThrottle):
        clock.now += 100
        assert _throttle(cls, "2/s", clock).allow_request(REQUEST, VIEW)
        assert _throttle(cls, "2/s", clock).allow_request(REQUEST, VIEW)
        refused = _throttle(cls, "2/s", clock)
        assert not refused.allow_request(REQUEST, VIEW)
        assert refused.wait() == 1.0  # the whole window left, one request to come
        clock.now += 1.0
        assert _throttle(cls, "2/s", clock).allow_request(REQUEST, VIEW)
    caches["default"].clear()


def test_the_default_throttles_are_the_packed_ones_and_still_answer_429(world: World, settings: Any) -> None:
    from rest_framework.settings import api_settings

    defaults: Any = api_settings.DEFAULT_THROTTLE_CLASSES  # the classes, imported from the settings' paths
    assert defaults == [throttling.AnonRateThrottle, throttling.UserRateThrottle]
    rates = dict(drf.UserRateThrottle.THROTTLE_RATES)
    drf.UserRateThrottle.THROTTLE_RATES = {**rates, "user": "2/min"}
    try:
        client = bearer(login("patient.a@example.org").json()["access"])
        statuses = [client.get("/api/v1/me").status_code for _ in range(3)]
        refused = client.get("/api/v1/me/plan")
    finally:
        drf.UserRateThrottle.THROTTLE_RATES = rates
    assert statuses == [200, 200, 429]  # one history per user, across endpoints, as DRF's
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["status"] == 429


# --- the auth query on a kept cursor ----------------------------------------------------------


def _token_user(world: World) -> Any:
    from backend.auth_query import token_user

    user = world.users["patient_a"]
    return token_user(user_id=str(user.public_id), session="no-such-session")


@pytest.mark.postgres
def test_the_kept_cursor_reads_what_djangos_cursor_reads(world: World) -> None:
    fast = _token_user(world)  # no one records queries: the kept cursor
    with CaptureQueriesContext(connection) as queries:  # recorded: Django's cursor, and it is seen
        seen = _token_user(world)
    assert len(queries.captured_queries) == 1 and "EXECUTE carnet_token_user" in queries.captured_queries[0]["sql"]
    (fast_user, fast_out), (seen_user, seen_out) = fast, seen
    assert fast_out is seen_out is False
    for field in type(fast_user)._meta.concrete_fields:
        assert getattr(fast_user, field.attname) == getattr(seen_user, field.attname), field.name
    for field in type(fast_user.patient)._meta.concrete_fields:
        assert getattr(fast_user.patient, field.attname) == getattr(seen_user.patient, field.attname), field.name
    assert fast_user.patient.created_at.tzinfo is not None and fast_user.patient.user is fast_user


@pytest.mark.postgres
def test_fetchall_reads_every_row_on_the_kept_cursor_as_on_djangos(world: World) -> None:
    from backend.prepared import Prepared

    series = Prepared("carnet_test_series", "SELECT n, n * 2 FROM generate_series(1, %s) n ORDER BY n", ("int",))
    fast = series.fetchall([3])  # no one records queries: the kept cursor
    with CaptureQueriesContext(connection) as queries:  # recorded: Django's cursor
        seen = series.fetchall([3])
    assert len(queries.captured_queries) == 1 and "EXECUTE carnet_test_series" in queries.captured_queries[0]["sql"]
    assert [tuple(row) for row in fast] == [tuple(row) for row in seen] == [(1, 2), (2, 4), (3, 6)]
    assert series.fetchall([0]) == []


@pytest.mark.postgres
def test_the_kept_cursor_raises_djangos_errors_and_refuses_a_broken_transaction(world: World) -> None:
    from django.db import transaction
    from django.db.transaction import TransactionManagementError

    from backend.prepared import Prepared

    failing = Prepared("carnet_test_failing", "SELECT 1 / %s", ("int",))
    with pytest.raises(DatabaseError), transaction.atomic():
        failing.fetchone([0])  # psycopg's DivisionByZero, as Django's DataError
    with transaction.atomic():
        try:
            with transaction.atomic():
                failing.fetchone([0])
        except DatabaseError:
            pass
        assert failing.fetchone([1]) == (1,)  # the savepoint rolled back: the transaction goes on
    with pytest.raises(TransactionManagementError), transaction.atomic():
        connection.set_rollback(True)
        connection.needs_rollback = True
        failing.fetchone([1])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_kept_cursor_follows_a_replaced_connection() -> None:
    """A dead connection (PostgreSQL restarted, an idle timeout) is replaced by ``first_query`` and
    the cursor with it; the old connection is not kept alive by the old cursor."""
    import gc
    import weakref

    import psycopg

    from backend.prepared import Prepared, first_query

    db: Any = connection
    statement = Prepared("carnet_test_echo", "SELECT %s::int", ("int",))
    connection.ensure_connection()
    db.health_check_done = False  # a new request
    assert first_query(lambda: statement.fetchone([1])) == (1,)
    dead = weakref.ref(connection.connection)
    (pid,) = Prepared("carnet_test_pid", "SELECT pg_backend_pid() + %s", ("int",)).fetchone([0])
    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"] or None, port=s["PORT"] or None, user=s["USER"] or None, dbname=s["NAME"], autocommit=True
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    db.health_check_done = False
    assert first_query(lambda: statement.fetchone([2])) == (2,)  # prepared again on the new connection
    assert connection.connection is not dead()
    gc.collect()
    assert dead() is None
