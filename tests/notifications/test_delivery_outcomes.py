"""Outcomes on PostgreSQL: sent marks go to the server without waiting for its answer; the audit table's indexes."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import time_machine
from django.db import connection

from notifications import delivery
from notifications.models import OutboxMessage, OutboxState

from .conftest import paris

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _state_seen_by_another_session(pk: int) -> str:
    """The row's state as another connection sees it: what is committed."""
    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"] or None, port=s["PORT"] or None, user=s["USER"], dbname=s["NAME"], password=s["PASSWORD"] or None
    ) as other:
        row = other.execute("SELECT state FROM notifications_outboxmessage WHERE id = %s", [pk]).fetchone()
    assert row is not None
    return str(row[0])


def test_a_mark_is_committed_before_its_answer_is_read(due_emails: Any) -> None:
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        token, rows = delivery.outbox_claim(limit=10)
    outcomes = delivery._Outcomes()
    assert outcomes.ahead  # autocommit on psycopg 3
    answers: list[bool] = []
    outcomes.write(rows[0], token, answers.append, state=OutboxState.SENT, provider_id="p", attempts=1)
    assert outcomes.pending is not None and answers == []  # sent, answer not read
    # Committed by the server on its own: a worker killed now leaves the row marked (no duplicate).
    for _ in range(200):
        if _state_seen_by_another_session(rows[0].pk) == "sent":
            break
    assert _state_seen_by_another_session(rows[0].pk) == "sent"
    outcomes.drain()
    assert answers == [True] and outcomes.pending is None
    assert rows[0].state == OutboxState.SENT and rows[0].claimed_until is None  # the instance kept in step
    audit = rows[0].history.get(history_change_reason="delivery")  # the audit entry came in the same statement
    assert (audit.state, audit.provider_id, audit.claim_token) == ("sent", "p", token)


def test_any_other_statement_first_reads_the_pending_answer(due_emails: Any) -> None:
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        token, rows = delivery.outbox_claim(limit=10)
    outcomes = delivery._Outcomes()
    answers: list[tuple[int, bool]] = []
    with connection.execute_wrapper(outcomes.guard):
        outcomes.write(rows[0], "not-our-claim", lambda ok: answers.append((0, ok)), state=OutboxState.SENT)
        assert OutboxMessage.objects.filter(state=OutboxState.SENT).count() == 0  # read the answer first
        assert answers == [(0, False)]  # the claim was not ours: nothing written
        outcomes.write(rows[1], token, lambda ok: answers.append((1, ok)), state=OutboxState.SENT)
        outcomes.write(rows[2], token, lambda ok: answers.append((2, ok)), state=OutboxState.SENT)
        assert answers == [(0, False), (1, True)]  # the next mark reads the previous one's answer
        assert OutboxMessage.objects.filter(state=OutboxState.SENT).count() == 2
    assert answers == [(0, False), (1, True), (2, True)]


def test_a_database_error_in_a_mark_is_raised_where_its_answer_is_read(due_emails: Any) -> None:
    from django.db import DatabaseError

    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        token, rows = delivery.outbox_claim(limit=10)
    outcomes = delivery._Outcomes()
    outcomes.write(rows[0], token, lambda ok: None, state=OutboxState.SENT, provider_id="p" * 301)  # varchar(300)
    with pytest.raises(DatabaseError, match="too long"):
        outcomes.drain()
    with connection.cursor() as cursor:  # the session is usable again
        cursor.execute("SELECT state FROM notifications_outboxmessage WHERE id = %s", [rows[0].pk])
        assert cursor.fetchone()[0] == "sending"


def test_a_batch_in_autocommit_marks_ahead_and_counts_every_outcome(due_emails: Any, use_smtp: Any) -> None:
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        token, rows = delivery.outbox_claim(limit=10)
        # Another sweep took one row meanwhile (its lease ran out): its mark must find the claim lost.
        OutboxMessage.objects.filter(pk=rows[3].pk).update(claim_token="another-sweep")
        stats = delivery.outbox_deliver(token, rows)
    assert (stats.sent, stats.lost_claims) == (7, 1)
    assert use_smtp.count == 8 and use_smtp.duplicates() == 0
    assert OutboxMessage.objects.filter(state=OutboxState.SENT).count() == 7
    assert OutboxMessage.objects.get(pk=rows[3].pk).state == OutboxState.SENDING  # left to the other sweep
    sent = OutboxMessage.objects.filter(state=OutboxState.SENT)
    assert all(row.history.filter(history_change_reason="delivery", state="sent").count() == 1 for row in sent)


def test_sent_marks_go_two_to_a_statement_and_at_most_in_flight_wait(
    due_emails: Any, use_smtp: Any, monkeypatch: Any
) -> None:
    from notifications.transports.email import EmailTransport

    # ("send" | "marks", row keys, the keys the SMTP server had accepted then), in order
    events: list[tuple[str, list[str], frozenset[str]]] = []
    write_many, send = delivery._Outcomes.write_many, EmailTransport._send_chained

    def server_accepted() -> frozenset[str]:
        with use_smtp.lock:
            return frozenset(str(m["key"]) for m in use_smtp.messages)

    def recording_write_many(self: Any, token: str, outcomes: list[Any]) -> None:
        events.append(("marks", [row.key for row, _done, _values in outcomes], server_accepted()))
        write_many(self, token, outcomes)

    def recording_send(self: Any, email: Any, *args: Any) -> None:  # sends the end of the message before it too
        events.append(("send", [email.extra_headers["X-Carnet-Key"]], server_accepted()))
        send(self, email, *args)

    monkeypatch.setattr(delivery._Outcomes, "write_many", recording_write_many)
    monkeypatch.setattr(EmailTransport, "_send_chained", recording_send)
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        token, rows = delivery.outbox_claim(limit=10)
        stats = delivery.outbox_deliver(token, rows)
    assert stats.sent == 8 and use_smtp.count == 8 and use_smtp.duplicates() == 0
    marks = [keys for what, keys, _ in events if what == "marks"]
    assert [len(keys) for keys in marks] == [2, 2, 2, 2]  # one statement, one commit, for two messages
    marked: set[str] = set()
    for what, keys, accepted in events:
        if what == "send":
            # When a message goes out (with the end of the one before it, which the server may accept),
            # at most IN_FLIGHT - 1 accepted ones wait for their marks: with it, IN_FLIGHT.
            assert len(accepted - marked) <= delivery.IN_FLIGHT - 1, (keys, accepted - marked)
        else:
            assert set(keys) <= accepted  # marked once its server accepted it, not before
            assert len(accepted - marked) <= delivery.IN_FLIGHT == 3, (keys, accepted - marked)
            marked.update(keys)
    accepted = server_accepted()
    assert accepted == marked == set(OutboxMessage.objects.values_list("key", flat=True))
    sent = OutboxMessage.objects.filter(state=OutboxState.SENT)
    assert sent.count() == 8
    assert all(row.history.filter(history_change_reason="delivery", state="sent").count() == 1 for row in sent)


def test_marks_sent_together_answer_each_and_fail_together(due_emails: Any) -> None:
    from django.db import DatabaseError

    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        token, rows = delivery.outbox_claim(limit=10)
    outcomes = delivery._Outcomes()
    answers: list[tuple[int, bool]] = []

    def done(index: int) -> Any:
        return lambda ok: answers.append((index, ok))

    sent = {"state": OutboxState.SENT, "provider_id": "p", "attempts": 1}
    outcomes.write_many(token, [(rows[0], done(0), dict(sent)), (rows[1], done(1), dict(sent))])
    for _ in range(200):  # committed by the server on its own, both
        if _state_seen_by_another_session(rows[1].pk) == "sent":
            break
    assert [_state_seen_by_another_session(r.pk) for r in rows[:2]] == ["sent", "sent"]
    outcomes.write_many("not-our-claim", [(rows[2], done(2), dict(sent)), (rows[3], done(3), dict(sent))])
    outcomes.drain()
    assert answers == [(0, True), (1, True), (2, False), (3, False)]  # each its own answer
    # One transaction: a database error in one leaves the other unwritten too (both come back after the lease).
    outcomes.write_many(token, [(rows[4], done(4), dict(sent)), (rows[5], done(5), {**sent, "provider_id": "p" * 301})])
    with pytest.raises(DatabaseError, match="too long"):
        outcomes.drain()
    assert [_state_seen_by_another_session(r.pk) for r in rows[4:6]] == ["sending", "sending"]


def test_the_audit_table_keeps_only_the_indexes_its_readers_use() -> None:
    table = OutboxMessage.history.model._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    indexed = sorted(tuple(c["columns"]) for c in constraints.values() if c["index"] or c["primary_key"])
    assert indexed == [("history_date",), ("history_id",), ("history_user_id",), ("id",)]


def test_outcomes_run_as_statements_prepared_once_per_connection(due_emails: Any) -> None:
    from django.test.utils import CaptureQueriesContext

    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        token, rows = delivery.outbox_claim(limit=10)
    with CaptureQueriesContext(connection) as queries:
        for row in rows[:3]:
            assert delivery._finish(row, token, state=OutboxState.SENT, provider_id="p", attempts=1)
    sent = [str(q["sql"]) for q in queries.captured_queries]
    assert sum(q.startswith("PREPARE outbox_outcome_") for q in sent) <= 1  # none if an earlier test prepared it
    assert sum("EXECUTE outbox_outcome_" in q for q in sent) == 3
    assert not any("UPDATE" in q for q in sent if not q.startswith("PREPARE"))  # the statement's text went once
    outcomes = delivery._Outcomes()
    answers: list[bool] = []
    outcomes.write(rows[3], token, answers.append, state=OutboxState.SENT, provider_id="p", attempts=1)
    outcomes.drain()
    assert answers == [True]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'outbox_outcome_%%'")
        assert cursor.fetchone()[0] == 1  # one column set (a sent mark): one statement, on this connection
    assert OutboxMessage.objects.filter(state=OutboxState.SENT).count() == 4
    assert all(r.history.filter(history_change_reason="delivery", state="sent").count() == 1 for r in rows[:4])
