"""Delivery: claim due rows with a lease, send them, record the outcome.

A claim is one statement: ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`` on PostgreSQL
(a plain conditional ``UPDATE`` on SQLite, whose writers are serialised) moves a batch to
``sending`` with a claim token and a lease (``claimed_until``). Beat's sweep only claims and
hands each batch over to a worker task (``outbox_hand_over``), which renews the lease and sends
(``outbox_deliver_claimed``). A task lost with the broker, or a sender that dies, leaves its
rows in ``sending``; when the lease runs out any sweep claims them again, so nothing is lost.
Each row is marked ``sent`` right after its transport accepted it (and only if the claim is
still ours), while the next message is on the wire, two marks to a statement when they are sent
ahead, which keeps the window for a duplicate to ``IN_FLIGHT`` (three) sends per process.

Before sending, each row is checked against the world: a reminder whose item is done,
cancelled or moved, an escalation acknowledged or resolved, a revoked consent, a device gone
— the row is cancelled instead. A transient failure retries with exponential backoff and
jitter up to ``NOTIFY_MAX_ATTEMPTS``, then the row is ``dead`` and the care team's nurses
are told. A permanent failure deactivates the device or suppresses the address: no retry.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import select
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from queue import SimpleQueue
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from backend.prepared import Prepared
from notifications import policy, rendering, services
from notifications.models import (
    Channel,
    Device,
    MessageKind,
    OutboxMessage,
    OutboxState,
    SweepRun,
)
from notifications.transports import Outcome, Transport, TransportError, transport_for
from patients.models import Role, StaffMembership
from scheduling.models import CLOSED_STATUSES

log = logging.getLogger(__name__)

SWEEP_NAME = "outbox"


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def lease_seconds() -> int:
    return int(_setting("NOTIFY_LEASE_SECONDS", 300))


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    base = float(_setting("NOTIFY_RETRY_BASE_SECONDS", 60))
    cap = float(_setting("NOTIFY_RETRY_MAX_SECONDS", 6 * 3600))
    delay = min(cap, base * (1 << max(0, attempts - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


@dataclass
class Stats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    lost_claims: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Stats) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.dead += other.dead
        self.cancelled += other.cancelled
        self.lost_claims += other.lost_claims


def handover_lease_seconds() -> int:
    """How long a claimed batch may wait in the broker for a worker before any sweep claims it again."""
    return int(_setting("NOTIFY_HANDOVER_LEASE_SECONDS", 60))


# A claim is one statement: lock the next rows with SKIP LOCKED and move them to ``sending``
# under a new token. Expired leases first (a crashed sender's rows, or a batch lost with the
# broker), then due rows, each an index range scan of a partial index holding only rows in that
# state (outbox_lease_idx, outbox_due_idx). A row claimed earlier leaves a dead entry in that
# index until vacuum, so a sweep starts each claim after the last row the previous one took
# (``ClaimScan``) instead of walking those entries again. Due rows go by destination within a
# due time, so a device's rows land in one batch (one 410, not two).
# Each returns one row: the claimed ids, and the last key taken (where the next claim resumes).
_CLAIM_EXPIRED_SQL = """
WITH claimed AS (
    SELECT id, claimed_until AS at, 0 AS dev FROM {table}
    WHERE state = 'sending' AND claimed_until < %(now)s AND (claimed_until, id) > (%(at)s, %(id)s)
    ORDER BY claimed_until, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE {table} AS o SET claim_token = %(token)s, claimed_until = %(until)s, updated_at = %(now)s
    FROM claimed WHERE o.id = claimed.id
    RETURNING o.id
)
SELECT ARRAY(SELECT id FROM updated), at, dev, id FROM claimed ORDER BY at DESC, id DESC LIMIT 1
"""
_CLAIM_DUE_SQL = """
WITH claimed AS (
    SELECT id, next_attempt_at AS at, COALESCE(device_id, 0) AS dev FROM {table}
    WHERE state = 'pending' AND next_attempt_at <= %(now)s
    AND (next_attempt_at, COALESCE(device_id, 0), id) > (%(at)s, %(dev)s, %(id)s)
    ORDER BY next_attempt_at, COALESCE(device_id, 0), id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE {table} AS o SET state = 'sending', claim_token = %(token)s, claimed_until = %(until)s, updated_at = %(now)s
    FROM claimed WHERE o.id = claimed.id
    RETURNING o.id
)
SELECT ARRAY(SELECT id FROM updated), at, dev, id FROM claimed ORDER BY at DESC, dev DESC, id DESC LIMIT 1
"""
_START = (datetime(1, 1, 1, tzinfo=UTC), -1, -1)


@dataclass
class ClaimScan:
    """How far a sweep's claims have got: expired leases, then due rows, each in index order."""

    expired_done: bool = False
    after: tuple[datetime, int, int] = _START


def outbox_claim_ids(
    *, limit: int, lease: float, now: datetime | None = None, scan: ClaimScan | None = None
) -> tuple[str, list[int]]:
    """Claim up to ``limit`` due rows (and rows whose lease ran out) for ``lease`` seconds: (token, ids).

    Successive claims of one sweep share a ``scan``; a claim without one starts from the beginning.
    """
    moment = now or timezone.now()
    token = uuid.uuid4().hex
    until = moment + timedelta(seconds=lease)
    if connection.features.has_select_for_update_skip_locked:
        scan = scan or ClaimScan()
        table = connection.ops.quote_name(OutboxMessage._meta.db_table)
        ids: list[int] = []
        with connection.cursor() as cursor:
            while len(ids) < limit:
                wanted = limit - len(ids)
                at, dev, last = scan.after
                sql = _CLAIM_DUE_SQL if scan.expired_done else _CLAIM_EXPIRED_SQL
                cursor.execute(
                    sql.format(table=table),
                    {"now": moment, "limit": wanted, "token": token, "until": until, "at": at, "dev": dev, "id": last},
                )
                row = cursor.fetchone()
                taken: list[int] = row[0] if row else []
                ids += taken
                if row:
                    scan.after = (row[1], row[2], row[3])
                if len(taken) == wanted or scan.expired_done:
                    break
                scan.expired_done, scan.after = True, _START
        return token, ids
    # SQLite: no row locks, writers are serialised; the conditional UPDATE decides the winner.
    claimable = Q(state=OutboxState.PENDING, next_attempt_at__lte=moment) | Q(
        state=OutboxState.SENDING, claimed_until__lt=moment
    )
    with transaction.atomic():
        expired = OutboxMessage.objects.filter(state=OutboxState.SENDING, claimed_until__lt=moment)
        ids = list(expired.order_by("claimed_until", "pk").values_list("pk", flat=True)[:limit])
        if len(ids) < limit:
            due = OutboxMessage.objects.filter(state=OutboxState.PENDING, next_attempt_at__lte=moment)
            due = due.order_by("next_attempt_at", "device_id", "pk")
            ids += list(due.values_list("pk", flat=True)[: limit - len(ids)])
        if not ids:
            return token, []
        OutboxMessage.objects.filter(claimable, pk__in=ids).update(
            state=OutboxState.SENDING, claim_token=token, claimed_until=until, updated_at=moment
        )
        return token, list(OutboxMessage.objects.filter(pk__in=ids, claim_token=token).values_list("pk", flat=True))


def outbox_claimed_rows(*, token: str, ids: list[int], renew: bool = False) -> list[OutboxMessage]:
    """The rows of ``ids`` still claimed under ``token``, ready for ``outbox_deliver``.

    With ``renew``, the lease starts again now (``NOTIFY_LEASE_SECONDS``): a worker taking a
    handed-over batch holds it for the send, however long the batch waited in the broker. A row
    another sweep has claimed since (its hand-over lease ran out) has another token: it is not ours.
    """
    mine = OutboxMessage.objects.filter(pk__in=ids, claim_token=token, state=OutboxState.SENDING)
    if renew:
        moment = timezone.now()
        if not mine.update(claimed_until=moment + timedelta(seconds=lease_seconds()), updated_at=moment):
            return []
    return list(
        mine.select_related("patient", "recipient_user", "device", "plan_item", "escalation").order_by(
            "channel", "next_attempt_at", "pk"
        )
    )


def outbox_claim(
    *, limit: int, now: datetime | None = None, scan: ClaimScan | None = None
) -> tuple[str, list[OutboxMessage]]:
    """Claim up to ``limit`` due rows (and rows whose lease ran out) to send them here, now."""
    token, ids = outbox_claim_ids(limit=limit, lease=lease_seconds(), now=now, scan=scan)
    return token, outbox_claimed_rows(token=token, ids=ids) if ids else []


def _why_not(row: OutboxMessage) -> str:
    """Why ``row`` must not be sent any more, or "" when it is still wanted."""
    if row.kind == MessageKind.REMINDER:
        item = row.plan_item
        if item is None or item.status in CLOSED_STATUSES:
            return "item_closed"
        if row.item_version is not None and item.version != row.item_version:
            return "item_moved"
    if row.kind == MessageKind.ESCALATION:
        esc = row.escalation
        if esc is None or esc.resolved_at is not None:
            return "resolved"
        if esc.acknowledged_at is not None and row.recipient_user_id is not None:
            return "acknowledged"
    if row.recipient_user_id is not None:
        user = row.recipient_user
        if user is None or not user.is_active or (row.channel == Channel.EMAIL and not user.email):
            return "recipient_inactive"
    elif row.patient is not None:
        patient = row.patient
        if row.channel == Channel.EMAIL and not (patient.consent_email and patient.email):
            return "consent_withdrawn"
        if row.channel != Channel.EMAIL and not patient.consent_push:
            return "consent_withdrawn"
    if row.device_id is not None and (row.device is None or not row.device.active):
        return "device_gone"
    return ""


def _address(row: OutboxMessage) -> tuple[str, str, str, str]:
    """(to, first name, p256dh, auth) of a row."""
    if row.device is not None:
        first = row.patient.first_name if row.patient is not None else ""
        return row.device.endpoint, first, row.device.p256dh, row.device.auth
    if row.recipient_user is not None:
        return row.recipient_user.email, row.recipient_user.first_name, "", ""
    assert row.patient is not None
    return row.patient.email, row.patient.first_name, "", ""


# How long a batch trusts its read of which devices are active before reading again.
DEVICE_RECHECK_SECONDS = 1.0


def _active_devices(device_ids: set[int]) -> set[int]:
    """Which of a batch's devices are still active: one query per batch (or per second), not per push.

    Another sender may see a device's 410 meanwhile; ``DEVICE_RECHECK_SECONDS`` bounds how long
    this batch can miss it (at worst one more push to a gone subscription, answered 410 again).
    """
    if not device_ids:
        return set()
    return set(Device.objects.filter(pk__in=device_ids, active=True).values_list("pk", flat=True))


def _async_commit() -> bool:
    """Whether an outcome's commit may skip waiting for the WAL flush (PostgreSQL, autocommit, client binding)."""
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block  # SET LOCAL would reach the caller's whole transaction
        and not connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")  # one statement per execute
    )


AUDIT_REASON = "delivery"  # the audit entry's change reason for every outcome written here


def _audit_in_statement() -> bool:
    """Whether ``_finish`` writes the row's audit entry itself, in its UPDATE's statement (PostgreSQL)."""
    return connection.vendor == "postgresql"


def _finish(row: OutboxMessage, token: str, **values: Any) -> bool:
    """Write the outcome of ``row`` if our claim still holds; keep the instance in step for the audit.

    One hand-written statement: the ORM took 0.6 ms of CPU per row to build the UPDATE, as much
    as the email itself (bench/bench_delivery.py). On PostgreSQL the same statement writes the
    row's audit entry from what the UPDATE returned (``WITH done AS (UPDATE … RETURNING …)
    INSERT INTO <history> SELECT … FROM done``): the outcome and its audit commit together, in
    one round trip, instead of a bulk insert at the end of the batch that nothing overlapped
    (1 ms a row under load). Elsewhere the caller audits the rows for which this returned True.

    On PostgreSQL it commits without waiting for the WAL flush (``SET LOCAL synchronous_commit``
    in the same implicit transaction; a flushed commit cost 3-6 ms here, more than sending). A
    killed worker loses nothing by it: the server has the commit. A PostgreSQL crash may lose the
    last ~0.6 s of outcomes (3 × ``wal_writer_delay``) with their audit entries: those rows come
    back when their lease runs out and are sent again, a duplicate, never a loss.
    """
    sql, params, prepared = _outcome_parts(row, token, values)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            prepared.ensure(cursor)  # parsing the statement cost PostgreSQL more than running it
            sql = prepared.execute
        if _async_commit():
            cursor.execute(ASYNC_COMMIT + sql, params)
            cursor.nextset()  # the UPDATE's result: its row count
        else:
            cursor.execute(sql, params)
        done = int(cursor.rowcount)
    _keep_in_step(row, values)
    return done > 0


ASYNC_COMMIT = "SET LOCAL synchronous_commit TO off; "


def _outcome_parts(row: OutboxMessage, token: str, values: dict[str, Any]) -> tuple[str, list[Any], Prepared]:
    """The statement writing ``values`` to ``row`` while our claim holds (and its audit entry, on
    PostgreSQL), its parameters, and the same statement to prepare (``backend.prepared``).

    On PostgreSQL it runs as a prepared statement, ``PREPARE`` once per connection and column set:
    parsing and planning the UPDATE with its audit INSERT cost the server about 1 ms a message,
    running it 0.15 ms (bench/bench_delivery.py, ``database_cpu_ms_per_message``).
    """
    values.setdefault("claimed_until", None)
    values["updated_at"] = timezone.now()
    columns = outbox_columns()
    audit = _audit_in_statement() and getattr(settings, "SIMPLE_HISTORY_ENABLED", True)
    prepared = _outcome_prepared(tuple(values), audit)
    params = [columns[name].get_db_prep_save(value, connection) for name, value in values.items()]
    params += [row.pk, token, OutboxState.SENDING.value]
    if audit:
        params += audit_params(AUDIT_REASON, "~")
    return prepared.sql, params, prepared


@functools.cache
def _outcome_prepared(names: tuple[str, ...], audit: bool) -> Prepared:
    """The outcome statement setting the columns ``names`` (and writing its audit entry), with its parameter types."""
    columns = outbox_columns()
    quote = connection.ops.quote_name
    table = quote(OutboxMessage._meta.db_table)
    assignments = ", ".join(f"{quote(str(columns[name].column))} = %s" for name in names)
    # Table and column names come from the models; every value is a parameter.
    sql = f"UPDATE {table} SET {assignments} WHERE id = %s AND claim_token = %s AND state = %s"  # noqa: S608
    types = [str(columns[name].db_type(connection)) for name in [*names, "id", "claim_token", "state"]]
    if audit:
        sql = with_audit_sql(sql)
        history = OutboxMessage.history.model
        own = ("history_date", "history_change_reason", "history_type")
        types += [str(history._meta.get_field(name).db_type(connection)) for name in own]
    name = "outbox_outcome_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:16]
    return Prepared(name, sql, types)


def _wait_for(fd: int, events: int) -> None:
    """Block until ``fd`` is ready for ``events`` (poll: any descriptor number, unlike select)."""
    poller = select.poll()
    poller.register(fd, events | select.POLLERR | select.POLLHUP)
    poller.poll()


def _keep_in_step(row: OutboxMessage, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(row, name, value)


class _Outcomes:
    """The sent marks of one ``outbox_deliver``, each sent to PostgreSQL without waiting for its answer.

    A mark's statement goes to the server as soon as its message is accepted, as before; only
    reading its row count waits, until just before this thread's next statement of any kind
    (``drain``, also run by an execute wrapper on every query of the connection meanwhile). The
    answer was 1 to 2 ms of this thread's time per message (the statement, the round trip and,
    on a busy machine, the wait for the server process to be scheduled) while it could render
    the next message. The bound on duplicates is unchanged: a mark that reached the server's
    socket is executed and committed (one simple query with its implicit transaction) even if
    this process is killed before reading the answer.

    Only in autocommit on PostgreSQL through psycopg 3 with client-side binding (``_async_commit``);
    inside a transaction (tests, a caller's ``atomic``) each mark is ``_finish``, which waits.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[OutboxMessage, Callable[[bool], None]]] | None = None
        connection.ensure_connection()
        self.ahead = _async_commit() and hasattr(connection.connection, "pgconn")
        # Sent marks written per statement by ``outbox_deliver``: two when sent ahead (``IN_FLIGHT``).
        self.per_statement = MARKS_PER_STATEMENT if self.ahead else 1
        self.composer: Any = None  # a psycopg ClientCursor, to bind parameters as Django's cursors do
        self.raw: Any = None  # the psycopg connection the statements in ``ready`` are prepared on
        self.ready: set[str] = set()

    def write(self, row: OutboxMessage, token: str, done: Callable[[bool], None], **values: Any) -> None:
        """Write ``row``'s outcome; ``done(written)`` is called once the server answered (maybe later)."""
        self.write_many(token, [(row, done, values)])

    def write_many(
        self, token: str, outcomes: list[tuple[OutboxMessage, Callable[[bool], None], dict[str, Any]]]
    ) -> None:
        """Write several rows' outcomes (row, ``done``, values) in one round trip and one transaction.

        Sent ahead, as one simple query (``EXECUTE`` after ``EXECUTE``): PostgreSQL is woken, parses,
        and commits once for them all. Not ahead, each is ``_finish`` in turn."""
        self.drain()
        if not self.ahead:
            for row, done, values in outcomes:
                done(_finish(row, token, **values))
            return
        statements = []
        with connection.wrap_database_errors:
            if self.composer is None:
                import psycopg  # only reached on psycopg 3 (``ahead``)

                self.composer = psycopg.ClientCursor(connection.connection)
            if connection.connection is not self.raw:  # a new connection prepares again
                self.raw, self.ready = connection.connection, set()
            for row, _done, values in outcomes:
                _sql, params, prepared = _outcome_parts(row, token, values)
                if prepared.name not in self.ready:  # a Django cursor per mark just to see that cost 0.05 ms
                    with connection.cursor() as cursor:  # once per connection: parsing it cost more than running it
                        prepared.ensure(cursor)
                    self.ready.add(prepared.name)
                statements.append(self.composer.mogrify(prepared.execute, params))
            pgconn = connection.connection.pgconn
            pgconn.send_query((ASYNC_COMMIT + "; ".join(statements)).encode())
            while pgconn.flush():  # 1 while some of it is still to go
                _wait_for(pgconn.socket, select.POLLOUT)
        for row, _done, values in outcomes:
            _keep_in_step(row, values)
        self.pending = [(row, done) for row, done, _values in outcomes]

    def drain(self) -> None:
        """Read the answer to the marks sent last, if any, and pass it on."""
        if self.pending is None:
            return
        import psycopg  # only reached on psycopg 3 (``ahead``)

        pending, self.pending = self.pending, None
        written: list[int] = []
        error = ""
        with connection.wrap_database_errors:
            pgconn = connection.connection.pgconn
            while True:
                while pgconn.is_busy():
                    _wait_for(pgconn.socket, select.POLLIN)  # without the GIL
                    pgconn.consume_input()
                result = pgconn.get_result()
                if result is None:
                    break
                if result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
                    error = error or (result.error_message or b"").decode(errors="replace")
                elif result.command_tuples is not None:
                    written.append(result.command_tuples)  # an EXECUTE's row count (its audit INSERT's)
            if error:  # one transaction: none of them was written
                pks = ", ".join(str(row.pk) for row, _done in pending)
                raise psycopg.OperationalError(f"outbox {pks}: outcome not written: {error}")
        for index, (_row, done) in enumerate(pending):
            done(index < len(written) and written[index] > 0)

    def guard(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        """An execute wrapper: any other statement on this connection first reads the pending answer."""
        self.drain()
        return execute(sql, params, many, context)


def with_audit_sql(update: str) -> str:
    """``update`` (an UPDATE or INSERT of outbox rows, without ``RETURNING``) and the audit entry
    of each row it wrote, as django-simple-history writes it (here for outcomes; also
    ``services.create_rows``).

    Three more parameters: the entries' date, their change reason and their type (``audit_params``)."""
    source, target, table, _date_field = audit_columns()
    return (
        f"WITH done AS ({update} RETURNING {source}) "  # noqa: S608  # names from the models, values are parameters
        f"INSERT INTO {table} ({target}) SELECT {source}, %s, %s, %s, NULL FROM done"
    )


def audit_params(reason: str, history_type: str) -> list[Any]:
    """The three parameters ``with_audit_sql`` adds: now (the entries' date), the change reason
    and the history type (``+`` created, ``~`` changed)."""
    return [audit_columns()[3].get_db_prep_save(timezone.now(), connection), reason, history_type]


@functools.cache
def audit_columns() -> tuple[str, str, str, models.Field[Any, Any]]:
    """The outbox columns an audit entry copies, the history columns they go to (then its own), its
    table and its date field (``OutboxMessage.history`` builds a manager class on each access: once)."""
    history = OutboxMessage.history.model
    quote = connection.ops.quote_name
    fields = history.tracked_fields
    source = ", ".join(quote(f.column) for f in fields)
    own = ("history_date", "history_change_reason", "history_type", "history_user")
    target = ", ".join(quote(history._meta.get_field(name).column) for name in [*(f.name for f in fields), *own])
    return source, target, quote(history._meta.db_table), history._meta.get_field("history_date")


@functools.cache
def outbox_columns() -> dict[str, models.Field[Any, Any]]:
    return {f.name: f for f in OutboxMessage._meta.concrete_fields}


# Sending overlaps the bookkeeping. One sender thread per channel of a batch does the transport's
# I/O for message n while this thread writes earlier messages' outcomes and renders and prepares
# message n+1 (``Transport.prepare``: MIME bytes, encryption; the sender thread mostly waits on a
# socket, so the two seldom want the GIL at once). The database stays on this thread's
# connection, inside the caller's transaction if any. A row goes to the same device or address
# as the message on the wire only once that message's outcome is known (a 410 or a bounce
# cancels it).
#
# Sent marks go to PostgreSQL ``MARKS_PER_STATEMENT`` at a time when sent ahead (``_Outcomes``:
# autocommit on PostgreSQL), one statement and one commit for two messages: each mark woke the
# database server, which then took the CPU from this process on a machine whose cores were all
# busy (bench/bench_delivery.py: the marks were ~40% of this process's time per email). So a
# process killed at any moment leaves at most ``IN_FLIGHT`` accepted messages without their
# mark: the one on the wire, the one accepted just before it and the one accepted before that,
# waiting to share its statement. (A mark sent ahead is in the server's hands once sent: it
# commits whether or not this process lives to read the answer.) Inside a transaction, each
# mark is written alone, as soon as the next message is on the wire: at most 2.
# A chaining transport (email to a pipelining server: ``Transport.prepare_chained``) has
# ``CHAIN_DEPTH`` messages on the wire: message n-1 is accepted only when the sender thread sends
# its end with message n, which this thread hands over after reading the outcome of n-2 and
# before it marks n-2 (with n-3): at most n-3, n-2 and n-1 accepted and unmarked (n-2 and n-1
# inside a transaction), ``IN_FLIGHT`` as for any transport. A depth of 3 keeps the sender thread's next
# message queued (py-spy at depth 2: this thread waits for the sender 55 % of its time, the sender
# for the server 40 %), for one more duplicate (``IN_FLIGHT`` 4); measured on a busy machine it
# did not help (bench_delivery, 22k, load ~5: 487/484 against 552/578 email msg/s at depth 2).
MARKS_PER_STATEMENT = 2
CHAIN_DEPTH = 2
IN_FLIGHT = MARKS_PER_STATEMENT + CHAIN_DEPTH - 1


def outbox_deliver(token: str, rows: list[OutboxMessage]) -> Stats:
    """Send claimed ``rows``, one transport per channel, and record each outcome."""
    stats = Stats(claimed=len(rows))
    audited: list[OutboxMessage] = []
    undeliverable: list[tuple[OutboxMessage, str]] = []
    gone_devices: set[int] = set()
    gone_addresses: set[str] = set()
    outcomes = _Outcomes()
    by_channel: dict[str, list[OutboxMessage]] = defaultdict(list)
    for row in rows:
        reason = _why_not(row)
        if reason:
            if _finish(row, token, state=OutboxState.CANCELLED, closed_reason=reason):
                stats.cancelled += 1
                audited.append(row)
            continue
        by_channel[row.channel].append(row)

    def outcome(sending: _Sending) -> _Sending | None:
        """``sending`` once its server accepted it; a refusal is recorded here instead (None)."""
        try:
            sending.provider_id = sending.outcome.result()
        except TransportError as exc:
            outcomes.drain()  # the bookkeeping below may open a transaction: the connection must be idle
            if exc.permanent:
                _permanent(
                    sending.row, token, exc, stats, audited, undeliverable, gone_devices, gone_addresses, sending.to
                )
            else:
                _retry_or_die(sending.row, token, exc, stats, audited, undeliverable)
            return None
        return sending

    def mark_sent(sendings: list[_Sending]) -> None:
        """Write the sent marks of ``sendings`` (accepted by their servers), in one round trip."""

        def done_for(row: OutboxMessage) -> Callable[[bool], None]:
            def done(written: bool) -> None:
                if written:
                    stats.sent += 1
                    audited.append(row)
                else:
                    stats.lost_claims += 1
                    log.warning("outbox %s sent after its claim was lost: a duplicate is possible", row.pk)

            return done

        outcomes.write_many(
            token,
            [
                (
                    sending.row,
                    done_for(sending.row),
                    {
                        "state": OutboxState.SENT,
                        "provider_id": sending.provider_id[:300],
                        "sent_at": timezone.now(),
                        "attempts": sending.row.attempts + 1,
                        "last_error": "",
                    },
                )
                for sending in sendings
            ],
        )

    # Any other statement on this connection first reads the answer to the last mark sent.
    with connection.execute_wrapper(outcomes.guard):
        for channel, batch in by_channel.items():
            transport = transport_for(channel)
            try:
                transport.open()
            except TransportError as exc:
                for row in batch:
                    _retry_or_die(row, token, exc, stats, audited, undeliverable)
                continue
            device_ids = {row.device_id for row in batch if row.device_id}
            active, read_at = _active_devices(device_ids), time.monotonic()
            # Handed to the sender thread, outcome not read yet: one, or ``CHAIN_DEPTH`` when the
            # transport chains (the end of message n goes with message n+1: ``prepare_chained``).
            on_wire: deque[_Sending] = deque()
            depth = CHAIN_DEPTH if transport.chains else 1
            accepted: list[_Sending] = []  # accepted by their server, marks not written yet

            try:
                with _Sender() as sender:
                    for row in batch:
                        # While earlier messages are on the wire: the checks that read, and the rendering.
                        if row.claimed_until is not None and row.claimed_until < timezone.now():
                            stats.lost_claims += 1  # the lease ran out: another sweep may have the row now
                            continue
                        if row.device_id and time.monotonic() - read_at > DEVICE_RECHECK_SECONDS:
                            active, read_at = _active_devices(device_ids - gone_devices), time.monotonic()
                        to, first_name, p256dh, auth = _address(row)
                        message = rendering.envelope(row, to=to, first_name=first_name, p256dh=p256dh, auth=auth)
                        settled = Outcome()
                        try:
                            send = transport.prepare_chained(message)  # the CPU work stays on this thread
                        except TransportError as exc:
                            settled.set_exception(exc)  # recorded in turn, like any refusal
                            send = None
                        # A message to the destination of one on the wire waits for its outcome (a 410 or
                        # a bounce cancels it); any other waits for the one ``depth`` messages before it.
                        same = to.lower()
                        while on_wire and (len(on_wire) >= depth or any(s.to.lower() == same for s in on_wire)):
                            accepted += _read_oldest(on_wire, transport, sender, outcome)
                        if (row.device_id and (row.device_id in gone_devices or row.device_id not in active)) or (
                            row.device_id is None and same in gone_addresses
                        ):
                            if _finish(row, token, state=OutboxState.CANCELLED, closed_reason="destination_gone"):
                                stats.cancelled += 1
                                audited.append(row)
                        elif send is None:
                            on_wire.append(_Sending(row, to, settled, followed=True))  # its outcome is known
                        else:
                            sender.submit(send, settled)  # settles the messages on the wire before it
                            for sending in on_wire:
                                sending.followed = True
                            on_wire.append(_Sending(row, to, settled))
                        if len(accepted) >= outcomes.per_statement:
                            marks, accepted = accepted, []
                            mark_sent(marks)  # while the next message is on the wire
                    while on_wire:
                        accepted += _read_oldest(on_wire, transport, sender, outcome)
                    if accepted:
                        marks, accepted = accepted, []
                        mark_sent(marks)
            finally:
                # An error on this thread (the database, a rendering) still records the messages
                # accepted and those the sender handed over: the server may have accepted them.
                try:
                    while on_wire:
                        accepted += _read_oldest(on_wire, transport, None, outcome)
                except Exception:
                    log.exception("outbox %s: outcome not read, a duplicate is possible", [s.row.pk for s in on_wire])
                marks, accepted = accepted, []
                try:
                    if marks:
                        mark_sent(marks)
                except Exception:
                    log.exception("outbox %s: outcome not recorded, a duplicate is possible", [m.row.pk for m in marks])
                try:
                    outcomes.drain()
                except Exception:
                    log.exception("outbox: the last outcome's answer was not read, a duplicate is possible")
                transport.close()
    if audited and not _audit_in_statement():
        OutboxMessage.history.bulk_history_create(audited, update=True, default_change_reason=AUDIT_REASON)
    if undeliverable:
        _tell_staff(undeliverable)
    return stats


def _read_oldest(
    on_wire: deque[_Sending],
    transport: Transport,
    sender: _Sender | None,
    outcome: Callable[[_Sending], _Sending | None],
) -> list[_Sending]:
    """Read the outcome of the oldest message on the wire, settling it first if no later call to a
    chaining transport will: ``[it]`` once its server accepted it, ``[]`` when refused (recorded)."""
    oldest = on_wire[0]
    if transport.chains and not oldest.followed:
        if sender is not None:
            sender.submit(transport.flush)
        else:
            transport.flush()  # the sender thread is gone: nothing else uses the session
        for sending in on_wire:
            sending.followed = True
    on_wire.popleft()
    sent = outcome(oldest)
    return [] if sent is None else [sent]


class _Sender:
    """A thread running the calls handed to it (``submit``) in turn; leaving ``with`` waits for them all.

    A batch's transport I/O, off the delivering thread. (``ThreadPoolExecutor`` cost ~15 µs of CPU
    a message more: a work item, a Future and their locks for each call.)
    """

    def __init__(self) -> None:
        self.calls: SimpleQueue[tuple[Callable[..., object], tuple[Any, ...]] | None] = SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="carnet-send", daemon=True)

    def __enter__(self) -> _Sender:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.calls.put(None)
        self.thread.join()

    def submit(self, call: Callable[..., object], *args: Any) -> None:
        self.calls.put((call, args))

    def _run(self) -> None:
        while (item := self.calls.get()) is not None:
            call, args = item
            try:
                call(*args)  # a transport settles its messages' outcomes itself, even when it raises
            except BaseException:
                log.exception("outbox sender: %r failed", call)


@dataclass
class _Sending:
    """A message handed to the sender thread: its row, its destination, the transport's answer."""

    row: OutboxMessage
    to: str
    outcome: Outcome
    provider_id: str = ""
    followed: bool = False  # a later call to the transport settles it (``Transport.prepare_chained``)


def _retry_or_die(
    row: OutboxMessage,
    token: str,
    exc: TransportError,
    stats: Stats,
    audited: list[OutboxMessage],
    undeliverable: list[tuple[OutboxMessage, str]],
) -> None:
    attempts = row.attempts + 1
    if attempts >= int(_setting("NOTIFY_MAX_ATTEMPTS", 8)):
        if _finish(
            row,
            token,
            state=OutboxState.DEAD,
            attempts=attempts,
            last_error=exc.message[:2000],
            closed_reason="max_attempts",
        ):
            stats.dead += 1
            audited.append(row)
            undeliverable.append((row, "max_attempts"))
        return
    delay = backoff_seconds(attempts)
    if exc.retry_after:
        delay = max(delay, exc.retry_after)
    if _finish(
        row,
        token,
        state=OutboxState.PENDING,
        attempts=attempts,
        last_error=exc.message[:2000],
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        claim_token="",
    ):
        stats.retried += 1
        audited.append(row)


def _permanent(
    row: OutboxMessage,
    token: str,
    exc: TransportError,
    stats: Stats,
    audited: list[OutboxMessage],
    undeliverable: list[tuple[OutboxMessage, str]],
    gone_devices: set[int],
    gone_addresses: set[str],
    to: str,
) -> None:
    if _finish(
        row,
        token,
        state=OutboxState.DEAD,
        attempts=row.attempts + 1,
        last_error=exc.message[:2000],
        closed_reason="destination_gone",
    ):
        stats.dead += 1
        audited.append(row)
        undeliverable.append((row, "destination_gone"))
    if row.device is not None:
        gone_devices.add(row.device.pk)
        stats.cancelled += services.device_deactivate(device=row.device, reason=exc.message)
    else:
        gone_addresses.add(to.lower())
        stats.cancelled += services.address_suppress(email=to, reason=exc.message)


def _tell_staff(rows: list[tuple[OutboxMessage, str]]) -> int:
    """A dead patient message: the care team's nurses hear of it, once per item and reason."""
    now = timezone.now()
    new: list[OutboxMessage] = []
    for row, reason in rows:
        if row.recipient_user_id is not None or row.patient is None:
            continue  # a staff message that died is in the admin and the health counts
        subject = row.plan_item_id or row.escalation_id
        for nurse in services.staff_for_patient(row.patient):
            key = policy.idempotency_key(
                "undeliverable", row.patient_id, row.kind, subject, row.item_version, reason, nurse.pk
            )
            new.append(
                OutboxMessage(
                    key=key,
                    kind=MessageKind.UNDELIVERABLE,
                    channel=Channel.EMAIL,
                    patient_id=row.patient_id,
                    recipient_user=nurse,
                    plan_item_id=row.plan_item_id,
                    escalation_id=row.escalation_id,
                    language=nurse.language,
                    context={"reason": reason},
                    send_at=now,
                    next_attempt_at=now,
                )
            )
    return services.create_rows(new, reason="undeliverable")


# --- the daily staff digest -------------------------------------------------------------------


def staff_digest_fold(*, now: datetime | None = None) -> int:
    """Replace a flood: when a staff member has many due alerts, fold them into one daily digest.

    Once a member is in digest mode for a local day, later alerts of that day fold into the
    next digest too (today's while it is pending, tomorrow's once today's is sent).
    """
    moment = now or timezone.now()
    threshold = int(_setting("NOTIFY_DIGEST_THRESHOLD", 5))
    due = OutboxMessage.objects.filter(
        kind=MessageKind.ESCALATION,
        state=OutboxState.PENDING,
        recipient_user__isnull=False,
        next_attempt_at__lte=moment,
    )
    counts = {
        (r["recipient_user_id"], r["channel"]): r["n"]
        for r in due.values("recipient_user_id", "channel").annotate(n=Count("*"))
    }
    if not counts:
        return 0
    digests = OutboxMessage.objects.filter(
        kind=MessageKind.DIGEST, recipient_user_id__in={u for u, _ in counts}, send_at__gte=moment - timedelta(days=2)
    )
    has_digest = {(d.recipient_user_id, d.channel, d.context.get("day")) for d in digests}
    teams = dict(
        StaffMembership.objects.filter(user_id__in={u for u, _ in counts}, role__in=[Role.NURSE, Role.PHYSICIAN])
        .order_by("user_id", "pk")
        .values_list("user_id", "care_team__timezone")
    )
    folded = 0
    for (user_id, channel), n in counts.items():
        tz = ZoneInfo(teams.get(user_id, settings.TIME_ZONE))
        today = timezone.localtime(moment, tz).date()
        if n < threshold and (user_id, channel, today.isoformat()) not in has_digest:
            continue
        folded += _fold(user_id, channel, today, tz, moment)
    return folded


def _fold(user_id: int, channel: str, today: date, tz: ZoneInfo, moment: datetime) -> int:
    with transaction.atomic():
        rows = OutboxMessage.objects.filter(
            kind=MessageKind.ESCALATION,
            state=OutboxState.PENDING,
            recipient_user_id=user_id,
            channel=channel,
            next_attempt_at__lte=moment,
        ).select_related("escalation")
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True, of=("self",))
        batch = list(rows)
        if not batch:
            return 0
        day = today
        for _ in range(3):
            key = policy.idempotency_key("digest", user_id, channel, day.isoformat())
            # A digest has no patient: unique by key among such rows (``outbox_staff_key_uniq``).
            digest, _created = OutboxMessage.objects.get_or_create(
                key=key,
                patient=None,
                defaults={
                    "kind": MessageKind.DIGEST,
                    "channel": channel,
                    "recipient_user_id": user_id,
                    "language": batch[0].language,
                    "context": {"day": day.isoformat(), "count": 0, "critical": 0},
                    "send_at": moment if day == today else policy.local_send_at(day, tz=tz, at=services.notify_time()),
                    "next_attempt_at": moment
                    if day == today
                    else policy.local_send_at(day, tz=tz, at=services.notify_time()),
                },
            )
            if digest.state == OutboxState.PENDING:
                break
            day = day + timedelta(days=1)
        else:
            return 0
        digest = OutboxMessage.objects.select_for_update().get(pk=digest.pk)
        critical = sum(1 for r in batch if r.escalation is not None and r.escalation.severity == "C")
        digest.context = {
            **digest.context,
            "count": int(digest.context.get("count", 0)) + len(batch),
            "critical": int(digest.context.get("critical", 0)) + critical,
        }
        digest.save(update_fields=["context", "updated_at"])
        OutboxMessage.objects.filter(pk__in=[r.pk for r in batch], state=OutboxState.PENDING).update(
            state=OutboxState.DIGESTED, digest=digest, closed_reason="digest", updated_at=moment
        )
        for r in batch:
            r.state, r.digest, r.closed_reason = OutboxState.DIGESTED, digest, "digest"
        OutboxMessage.history.bulk_history_create(batch, update=True, default_change_reason="digest")
        return len(batch)


# --- the sweep --------------------------------------------------------------------------------


def sweep_record(
    *, started: datetime | None = None, finished: datetime | None = None, stats: Stats | None = None
) -> None:
    values: dict[str, Any] = {}
    if started is not None:
        values.update(last_started_at=started, runs=F("runs") + 1)
    if finished is not None:
        values["last_finished_at"] = finished
    if stats is not None:
        values.update(last_claimed=stats.claimed, last_sent=stats.sent)
    # One statement once the row exists (every sweep but the first).
    if values and SweepRun.objects.filter(name=SWEEP_NAME).update(**values):
        return
    SweepRun.objects.get_or_create(name=SWEEP_NAME)
    if values:
        SweepRun.objects.filter(name=SWEEP_NAME).update(**values)


def _budget(batch_size: int | None, time_budget: float | None) -> tuple[int, float]:
    size = batch_size or int(_setting("NOTIFY_BATCH_SIZE", 100))
    budget = time_budget if time_budget is not None else float(_setting("NOTIFY_SWEEP_BUDGET_SECONDS", 45))
    return size, time.monotonic() + budget


def outbox_drain(*, batch_size: int | None = None, time_budget: float | None = None) -> Stats:
    """Claim and send batches here until nothing is due or the time budget is spent."""
    size, deadline = _budget(batch_size, time_budget)
    total = Stats()
    scan = ClaimScan()
    while time.monotonic() < deadline:
        token, rows = outbox_claim(limit=size, scan=scan)
        if not rows:
            break
        total.add(outbox_deliver(token, rows))
    return total


def outbox_deliver_claimed(*, token: str, ids: list[int]) -> Stats:
    """A worker's side of the hand-over: renew the lease of the batch, then send it."""
    rows = outbox_claimed_rows(token=token, ids=ids, renew=True)
    if not rows:
        return Stats(lost_claims=len(ids))  # claimed again after the hand-over lease, or finished
    stats = outbox_deliver(token, rows)
    stats.lost_claims += len(ids) - len(rows)
    return stats


def outbox_release(*, token: str, ids: list[int]) -> int:
    """Give claimed rows back at once (their batch could not be handed over), not after the lease."""
    return OutboxMessage.objects.filter(pk__in=ids, claim_token=token, state=OutboxState.SENDING).update(
        state=OutboxState.PENDING, claim_token="", claimed_until=None, updated_at=timezone.now()
    )


def outbox_in_flight(*, now: datetime | None = None) -> int:
    """Rows claimed and not yet finished whose lease still runs (queued or being sent)."""
    moment = now or timezone.now()
    return OutboxMessage.objects.filter(state=OutboxState.SENDING, claimed_until__gte=moment).count()


def outbox_hand_over(
    hand_over: Callable[[str, list[int]], object],
    *,
    batch_size: int | None = None,
    time_budget: float | None = None,
    max_in_flight: int | None = None,
) -> Stats:
    """Claim due rows batch by batch and pass each batch to ``hand_over(token, ids)``.

    Each batch is leased for ``NOTIFY_HANDOVER_LEASE_SECONDS``: if its task is lost (a broker
    restarted without persistence, a worker killed before it started the batch), a later sweep
    claims the rows again. At most ``NOTIFY_SWEEP_MAX_IN_FLIGHT`` rows are claimed and unfinished
    at once, so batches do not outwait their lease in the queue when the workers fall behind.
    """
    size, deadline = _budget(batch_size, time_budget)
    limit = max_in_flight if max_in_flight is not None else int(_setting("NOTIFY_SWEEP_MAX_IN_FLIGHT", 20_000))
    room = limit - outbox_in_flight()
    lease = handover_lease_seconds()
    total = Stats()
    scan = ClaimScan()
    while room > 0 and time.monotonic() < deadline:
        token, ids = outbox_claim_ids(limit=min(size, room), lease=lease, scan=scan)
        if not ids:
            break
        try:
            hand_over(token, ids)
        except Exception:
            outbox_release(token=token, ids=ids)
            raise
        total.claimed += len(ids)
        room -= len(ids)
    return total


def outbox_backlog(*, now: datetime | None = None) -> int:
    """Rows that a claim would take now: due, or leased to a sender that did not finish in time."""
    moment = now or timezone.now()
    # Two counts over the two partial indexes rather than one OR, which walks every claimable row.
    due = OutboxMessage.objects.filter(state=OutboxState.PENDING, next_attempt_at__lte=moment).count()
    return due + OutboxMessage.objects.filter(state=OutboxState.SENDING, claimed_until__lt=moment).count()


def outbox_sweep(
    *,
    batch_size: int | None = None,
    time_budget: float | None = None,
    hand_over: Callable[[str, list[int]], object] | None = None,
    max_in_flight: int | None = None,
) -> Stats:
    """One sweep (beat, every minute): record it, fold floods into digests, claim what is due.

    With ``hand_over`` (the Celery task publishing one delivery task per batch) the sweep only
    claims and hands over; without it, it sends each batch itself (tests, ``outbox_drain``).
    """
    started = timezone.now()
    sweep_record(started=started)
    staff_digest_fold(now=started)
    if hand_over is None:
        stats = outbox_drain(batch_size=batch_size, time_budget=time_budget)
    else:
        stats = outbox_hand_over(hand_over, batch_size=batch_size, time_budget=time_budget, max_in_flight=max_in_flight)
    sweep_record(finished=timezone.now(), stats=stats)
    return stats
