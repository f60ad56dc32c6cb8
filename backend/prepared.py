"""Server-side prepared statements for the hottest reads on PostgreSQL.

Django sends every query as text to be parsed and planned again. For the few statements run on
every request of the patient API (the token's user, the plan's items, the booklet), that costs
PostgreSQL more than running them: the booklet's statement plans in about a millisecond and runs
in two. ``Prepared`` sends ``PREPARE`` once per database connection, then ``EXECUTE``.

Prepared statements live in the session: they survive a rolled-back transaction, and a new
connection (Django reconnecting, PostgreSQL restarting) prepares them again. A pooler in
transaction mode (PgBouncer before 1.21) would break them; Carnet talks to PostgreSQL directly.
Other databases run the statement as it is. A session that prepares them also turns JIT off
(``ensure``): JIT compilation costs more than these statements run.

``first_query`` runs a request's first statement (the token's user: every API request) without
Django's health check, which costs a ``SELECT 1`` round trip per request on a reused connection
(``CONN_HEALTH_CHECKS``). The guarantee is kept: if the statement finds the connection dead (a
PostgreSQL restart, an idle timeout), the connection is closed and the statement runs once more
on a new one, as the health check would have done before it.

``Prepared.fetchone`` and ``fetchall`` run a statement through a psycopg cursor kept per
connection, without Django's cursor wrapper, when nothing records or wraps queries (``DEBUG``
off, no ``assertNumQueries``, no ``execute_wrapper``): creating Django's cursor and wrapper for one
short statement costs about as much CPU as the statement's own round trip (0.07-0.1 ms of the
auth query's 0.15-0.18 ms, in process). Database errors are Django's all the same
(``wrap_database_errors``), and a broken transaction is refused as Django's cursor refuses it.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections

_T = TypeVar("_T")

# psycopg connection → names of the statements prepared on it.
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
# Where ``Prepared.fetchone`` keeps its cursor, on Django's connection object (one per thread): the
# psycopg connection it belongs to, the cursor, and the time zone its timestamps are loaded in
# (Django's ``create_cursor`` sets it from the connection's). Replaced with the connection; not in
# a weak mapping keyed by the connection, which the cursor would keep alive.
_KEPT_CURSOR = "_carnet_kept_cursor"


class Prepared:
    """A statement with ``%s`` placeholders, each parameter used once, in order."""

    def __init__(self, name: str, sql: str, types: Sequence[str]) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not a statement name: {name!r}")
        parts = sql.split("%s")
        if len(parts) - 1 != len(types):
            raise ValueError(f"{name}: {len(parts) - 1} placeholders for {len(types)} types")
        self.name = name
        self.sql = sql
        numbered = parts[0] + "".join(f"${index}{part}" for index, part in enumerate(parts[1:], start=1))
        self.prepare = f"PREPARE {name} ({', '.join(types)}) AS {numbered}"
        self.execute = f"EXECUTE {name} ({', '.join(['%s'] * len(types))})"

    def run(self, cursor: Any, params: Sequence[Any]) -> None:
        """Execute on ``cursor`` (a cursor of ``django.db.connection``); fetch from it after."""
        if connection.vendor != "postgresql":
            cursor.execute(self.sql, params)
            return
        self.ensure(cursor)
        cursor.execute(self.execute, params)

    def fetchone(self, params: Sequence[Any]) -> Any:
        """The statement's first row (or None), run on the default database."""
        return self._fetch(params, one=True)

    def fetchall(self, params: Sequence[Any]) -> list[Any]:
        """The statement's rows, run on the default database."""
        rows: list[Any] = self._fetch(params, one=False)
        return rows

    def _fetch(self, params: Sequence[Any], *, one: bool) -> Any:
        db = connections[DEFAULT_DB_ALIAS]
        if db.vendor != "postgresql" or db.queries_logged or db.execute_wrappers:
            with db.cursor() as cursor:  # Django's cursor: its logging, wrappers and checks
                self.run(cursor, params)
                return cursor.fetchone() if one else cursor.fetchall()
        db.close_if_health_check_failed()  # as Django's cursor() does (a no-op after first_query)
        db.ensure_connection()
        raw = db.connection
        db.validate_no_broken_transaction()  # as Django's cursor does before a statement
        with db.wrap_database_errors:
            kept = getattr(db, _KEPT_CURSOR, None)
            if kept is None or kept[0] is not raw or kept[1].closed or kept[2] is not db.timezone:
                kept = (raw, db.create_cursor(), db.timezone)
                setattr(db, _KEPT_CURSOR, kept)
            cursor = kept[1]
            self.ensure(cursor)
            cursor.execute(self.execute, params)
            return cursor.fetchone() if one else cursor.fetchall()

    def ensure(self, cursor: Any) -> None:
        """``PREPARE`` on ``cursor``'s connection (PostgreSQL) unless done already; ``execute`` may follow."""
        raw = connection.connection
        names = _prepared.get(raw)
        if names is None:
            names = _prepared[raw] = set()
            # A session that runs these statements runs without JIT: their generic plans are
            # costed from rough estimates (the booklet's five correlated counts, a patients'
            # login column that is mostly empty) that can pass ``jit_above_cost``, and JIT then
            # compiles for ~60 ms on every execution of a sub-millisecond statement (the
            # booklet at a million patients: 27 requests/s, 53 ms of PostgreSQL CPU each).
            cursor.execute("SET jit = off")
        if self.name not in names:
            cursor.execute(self.prepare)
            names.add(self.name)


def first_query(read: Callable[[], _T]) -> _T:
    """``read()`` (a read-only query, safe to run twice) as the first query of a request.

    On a connection reused from an earlier request, Django would check it with a round trip
    before the first query. Here the query itself is the check: it runs at once, and if it fails
    because the connection is dead, the connection is replaced and ``read()`` runs again. Inside
    a transaction (tests, a service) or on a new connection, nothing changes.
    """
    # The connection itself, not the ``connection`` proxy (each attribute through it is a lookup of
    # the thread's connection); the health check's flags (Django >= 4.1) are not in django-stubs.
    db: Any = connections[DEFAULT_DB_ALIAS]
    if db.connection is None or not db.health_check_enabled or db.health_check_done or db.in_atomic_block:
        return read()
    db.health_check_done = True  # Django's flag: skip the check for this request
    try:
        return read()
    except DatabaseError:
        if db.is_usable():
            raise  # the connection is fine: a genuine error of the query
        db.close()  # dead: the next cursor connects anew (and prepares again)
        return read()
