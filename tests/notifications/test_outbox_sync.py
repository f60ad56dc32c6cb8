"""Outbox rows follow the plan: one per message, recipient, channel and send time, never twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications import services
from notifications.models import Device, MessageKind, OutboxMessage, OutboxState
from scheduling.rules.protocols import protocols
from scheduling.selectors import rules_config

from .conftest import OP, paris

pytestmark = pytest.mark.django_db


def _pending(patient: Any, **filters: Any) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(patient=patient, state=OutboxState.PENDING, **filters).order_by("send_at"))


def z(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def test_injection_reminders_follow_the_protocol_offsets_at_nine_local(make_patient: Any, make_item: Any) -> None:
    patient = make_patient(consent_push=False)
    with time_machine.travel(paris("2026-01-15"), tick=False):
        make_item(patient, due="2026-07-15")
        result = services.outbox_sync(patients=[patient])
    offsets = tuple(sorted(protocols(rules_config())[OP].notification_offsets))
    rows = _pending(patient)
    assert result.created == len(offsets) == len(rows)
    assert [r.offset_days for r in rows] == list(offsets)
    assert {r.channel for r in rows} == {"email"}
    # 2026-07-01 (D-14) at 09:00 CEST = 07:00Z; the due day too.
    assert rows[-1].send_at == z("2026-07-15T07:00")
    assert {r.send_at.astimezone(UTC).time() for r in rows} == {time(7, 0)}
    assert len({r.key for r in rows}) == len(rows)


def test_other_kinds_use_the_policy_table(make_patient: Any, make_item: Any) -> None:
    patient = make_patient(consent_push=False)
    with time_machine.travel(paris("2026-01-15"), tick=False):
        make_item(patient, due="2026-02-10", kind="calcium_check")
        make_item(patient, due="2026-03-10", kind="dental_visit")
        make_item(patient, due="2026-02-01", kind="vitamin_d_dose", protocol="vitamin_d_50000iu")
        services.outbox_sync(patients=[patient])
    got = sorted((r.context["item_kind"], r.offset_days) for r in _pending(patient))
    assert got == [("calcium_check", -2), ("calcium_check", 0), ("dental_visit", -14), ("vitamin_d_dose", 0)]


def test_one_row_per_push_device_and_email(make_patient: Any, make_item: Any) -> None:
    patient = make_patient()
    Device.objects.create(patient=patient, channel="webpush", endpoint="https://push.test/a", p256dh="k", auth="a")
    Device.objects.create(patient=patient, channel="fcm", endpoint="fcm-token-1")
    Device.objects.create(patient=patient, channel="apns", endpoint="apns-token-off", active=False)
    with time_machine.travel(paris("2026-01-15"), tick=False):
        make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
    channels = sorted(r.channel for r in _pending(patient))
    assert channels == ["email", "email", "fcm", "fcm", "webpush", "webpush"]


def test_no_consent_no_rows(make_patient: Any, make_item: Any) -> None:
    patient = make_patient(consent_email=False, consent_push=False)
    with time_machine.travel(paris("2026-01-15"), tick=False):
        make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
    assert _pending(patient) == []


def test_replanning_unchanged_facts_creates_and_cancels_nothing(make_patient: Any, make_item: Any) -> None:
    patient = make_patient()
    with time_machine.travel(paris("2026-01-15"), tick=False):
        make_item(patient, due="2026-07-15")
        services.outbox_sync(patients=[patient])
    before = {r.key: (r.pk, r.send_at, r.updated_at) for r in OutboxMessage.objects.all()}
    with time_machine.travel(paris("2026-01-16"), tick=False), CaptureQueriesContext(connection) as ctx:
        result = services.outbox_sync(patients=[patient])
    assert (result.created, result.cancelled, result.retimed) == (0, 0, 0)
    writes = [q["sql"] for q in ctx.captured_queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []
    assert {r.key: (r.pk, r.send_at, r.updated_at) for r in OutboxMessage.objects.all()} == before


def test_sync_costs_a_fixed_number_of_queries(make_patient: Any, make_item: Any) -> None:
    with time_machine.travel(paris("2026-01-15"), tick=False):
        few = [make_patient() for _ in range(2)]
        many = [make_patient() for _ in range(5)]  # one SQLite insert batch either way
        for p in few + many:
            make_item(p, due="2026-07-15")
            make_item(p, due="2026-02-10", kind="calcium_check")
        with CaptureQueriesContext(connection) as small:
            services.outbox_sync(patients=few)
        with CaptureQueriesContext(connection) as large:
            services.outbox_sync(patients=many)
    assert len(large.captured_queries) == len(small.captured_queries)


def test_moved_item_cancels_pending_and_creates_new(make_patient: Any, make_item: Any) -> None:
    patient = make_patient(consent_push=False)
    with time_machine.travel(paris("2026-01-15"), tick=False):
        item = make_item(patient, due="2026-07-15")
        services.outbox_sync(patients=[patient])
    old = {r.pk for r in _pending(patient)}
    with time_machine.travel(paris("2026-01-21"), tick=False):
        item.due, item.version = date(2026, 7, 20), 2  # a corrected dose date moved the item (OP-01)
        item.save()
        result = services.outbox_sync(patients=[patient])
    assert result.cancelled == len(old)
    assert set(OutboxMessage.objects.filter(pk__in=old).values_list("state", flat=True)) == {"cancelled"}
    new = _pending(patient)
    assert {r.item_version for r in new} == {2}
    assert new[-1].send_at == z("2026-07-20T07:00")


def test_done_or_cancelled_item_cancels_its_pending_rows(make_patient: Any, make_item: Any) -> None:
    patient = make_patient(consent_push=False)
    with time_machine.travel(paris("2026-01-15"), tick=False):
        item = make_item(patient, due="2026-07-15")
        other = make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
        item.status = "done"
        item.save()
        services.outbox_sync(patients=[patient])
    assert {r.plan_item_id for r in _pending(patient)} == {other.pk}
    closed = OutboxMessage.objects.filter(plan_item=item)
    assert set(closed.values_list("state", "closed_reason")) == {("cancelled", "replanned")}
    # Audited: each cancelled row has a history entry saying why.
    assert closed.first().history.filter(history_change_reason="replanned").exists()


def test_a_sync_of_some_items_touches_only_their_messages(make_patient: Any, make_item: Any) -> None:
    """``items=`` (the bulk passes: the items whose messages may have changed) syncs those items'
    messages and leaves the patient's others as they are, even out of step (a full sync mends
    them); no item: nothing read."""
    patient = make_patient(consent_push=False)
    with time_machine.travel(paris("2026-01-15"), tick=False):
        moved = make_item(patient, due="2026-07-15")
        other = make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
        before = {r.pk: r.plan_item_id for r in _pending(patient)}
        moved.due, moved.version = date(2026, 7, 20), 2
        moved.save()
        other.due, other.version = date(2026, 2, 12), 2
        other.save()
        with CaptureQueriesContext(connection) as nothing:
            assert services.outbox_sync(patients=[patient], items=set()).created == 0
        assert nothing.captured_queries == []
        result = services.outbox_sync(patients=[patient], items={moved.pk})
        mine = [pk for pk, item in before.items() if item == moved.pk]
        assert result.cancelled == len(mine) and result.created == len(mine)
        # The other item's rows: still version 1, still pending, until a sync that covers it.
        assert {r.item_version for r in _pending(patient, plan_item=other)} == {1}
        assert {r.item_version for r in _pending(patient, plan_item=moved)} == {2}
        full = services.outbox_sync(patients=[patient])
        assert full.cancelled == full.created == len(before) - len(mine)
        assert {r.item_version for r in _pending(patient)} == {2}


def test_past_offsets_are_not_created_late(make_patient: Any, make_item: Any) -> None:
    patient = make_patient(consent_push=False)
    with time_machine.travel(paris("2026-07-10", 11), tick=False):
        make_item(patient, due="2026-07-15")
        services.outbox_sync(patients=[patient])
    assert [r.offset_days for r in _pending(patient)] == [-3, 0]


def test_preferences_time_quiet_hours_language_and_channels(make_patient: Any, make_item: Any) -> None:
    patient = make_patient(language="fr")
    Device.objects.create(patient=patient, channel="webpush", endpoint="https://push.test/b", p256dh="k", auth="a")
    with time_machine.travel(paris("2026-01-15"), tick=False):
        make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
        assert len(_pending(patient)) == 4
        services.preference_set(
            patient=patient,
            channels=["email"],
            time_of_day=time(6, 30),
            quiet_start=time(22, 0),
            quiet_end=time(7, 15),
            language="en",
        )
    rows = _pending(patient)
    assert {r.channel for r in rows} == {"email"}
    assert {r.language for r in rows} == {"en"}
    # 06:30 is inside the quiet hours: pushed to 07:15 CET = 06:15Z.
    assert rows[-1].send_at == z("2026-02-10T06:15")


def test_new_york_patient_gets_nine_local(make_patient: Any, make_item: Any) -> None:
    patient = make_patient(timezone="America/New_York", consent_push=False)
    with time_machine.travel(paris("2026-02-01"), tick=False):
        make_item(patient, due="2026-03-10", kind="calcium_check")  # EDT from 2026-03-08
        services.outbox_sync(patients=[patient])
    assert [r.send_at for r in _pending(patient)] == [z("2026-03-08T13:00"), z("2026-03-10T13:00")]


def test_escalation_messages_go_to_patient_then_nurses_then_physicians(
    make_patient: Any, make_item: Any, open_escalation: Any, nurse: Any, nurse2: Any, physician: Any
) -> None:
    patient = make_patient(consent_push=False)
    opened = paris("2026-07-16", 0, 5)  # the nightly refresh, just after midnight
    with time_machine.travel(opened, tick=False):
        item = make_item(patient, due="2026-07-15", status="overdue_L1", level="L1")
        l1 = open_escalation(item, level="L1", severity="W", notify=["patient", "nurse"], at=opened)
        services.outbox_sync(patients=[patient])
    rows = OutboxMessage.objects.filter(escalation=l1, state="pending")
    to_patient = rows.filter(recipient_user__isnull=True)
    assert [r.send_at for r in to_patient] == [z("2026-07-16T07:00")]  # 09:00 local, not 00:05
    nurses = rows.filter(recipient_user__isnull=False)
    assert {r.recipient_user_id for r in nurses} == {nurse.pk, nurse2.pk}
    assert sorted({r.repeat for r in nurses}) == [0, 1, 2]  # W: two repeats, every 3 days
    assert not rows.filter(recipient_user=physician).exists()
    assert {r.language for r in nurses.filter(recipient_user=nurse2)} == {"en"}
    with time_machine.travel(paris("2026-08-06", 0, 5), tick=False):
        item.status, item.level = "overdue_L2", "L2"
        item.save()
        l2 = open_escalation(item, level="L2", severity="H", notify=["physician"], at=paris("2026-08-06", 0, 5))
        result = services.outbox_sync(patients=[patient])
    assert OutboxMessage.objects.filter(escalation=l2, recipient_user=physician, state="pending").count() == 4
    # L1's future repeats stop once L2 is the item's level (the L1 first messages stay as they were).
    assert (
        result.cancelled == 0
        or not OutboxMessage.objects.filter(
            escalation=l1, repeat__gt=0, state="pending", send_at__gt=z("2026-08-06T00:00")
        ).exists()
    )


def test_acknowledging_stops_repeats_resolving_closes(
    make_patient: Any, make_item: Any, open_escalation: Any, nurse: Any
) -> None:
    patient = make_patient(consent_push=False)
    opened = paris("2026-07-16", 9)
    with time_machine.travel(opened, tick=False):
        item = make_item(patient, due="2026-07-15", status="overdue_L1", level="L1")
        esc = open_escalation(item, level="L1", severity="W", notify=["patient", "nurse"], at=opened)
        services.outbox_sync(patients=[patient])
        esc.acknowledged_at, esc.acknowledged_by = opened, nurse
        esc.save()
        cancelled = services.escalation_messages_stop(escalation=esc)
    assert cancelled == 3  # the nurse's first message and its two repeats
    assert OutboxMessage.objects.filter(escalation=esc, state="pending", recipient_user__isnull=True).count() == 1
    with time_machine.travel(opened, tick=False):
        services.outbox_sync(patients=[patient])  # re-planning does not bring them back
    assert not OutboxMessage.objects.filter(escalation=esc, state="pending", recipient_user__isnull=False).exists()
    esc.resolved_at, esc.resolution = opened, "given"
    esc.save()
    services.escalation_messages_stop(escalation=esc)
    assert not OutboxMessage.objects.filter(escalation=esc, state="pending").exists()
    assert OutboxMessage.objects.filter(escalation=esc, kind=MessageKind.ESCALATION).count() == 4


@pytest.mark.postgres
def test_rows_created_in_one_statement_are_those_of_the_orm_with_their_audit(make_patient: Any, make_item: Any) -> None:
    """``create_rows`` on PostgreSQL (one INSERT … RETURNING feeding the audit insert) stores the
    very rows and audit entries that ``bulk_create`` and ``bulk_history_create`` store, skips keys
    that exist, and counts only what it inserted."""
    from django.db import transaction
    from django.forms.models import model_to_dict

    patient = make_patient()
    item = make_item(patient, due="2026-07-15")
    history = OutboxMessage.history.model
    tricky = 'quote " backslash \\ brace {} comma , é'

    def rows() -> list[OutboxMessage]:
        return [
            OutboxMessage(
                key=f"k{n}",
                kind=MessageKind.REMINDER,
                channel="email",
                patient=patient,
                plan_item=item if n else None,
                item_version=1 if n else None,
                offset_days=-n,
                language="fr",
                context={"title": tricky, "n": n, "list": [1, None, "x"]},
                send_at=z("2026-07-01T07:00:00"),
                next_attempt_at=z("2026-07-01T07:00:00"),
            )
            for n in range(3)
        ]

    def stored() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        own = {"id", "history_id", "history_date"}
        messages = [
            {k: v for k, v in model_to_dict(m).items() if k != "id"}
            | {"created_at": m.created_at, "updated_at": m.updated_at}
            for m in OutboxMessage.objects.order_by("key")
        ]
        entries = [
            {f.attname: getattr(h, f.attname) for f in history._meta.concrete_fields if f.attname not in own}
            for h in history.objects.order_by("key")
        ]
        return messages, entries

    class _Undo(Exception):
        pass

    with time_machine.travel(z("2026-06-30T10:00:00"), tick=False):
        try:
            with transaction.atomic():
                assert services._create_rows_orm(rows(), reason="planned") == 3
                reference = stored()
                raise _Undo
        except _Undo:
            pass
        assert not OutboxMessage.objects.exists()
        with CaptureQueriesContext(connection) as ctx:
            assert services.create_rows(rows(), reason="planned") == 3
        assert len(ctx.captured_queries) == 1
        assert stored() == reference
        assert reference[1][0]["history_type"] == "+" and reference[1][0]["history_change_reason"] == "planned"
        # Existing keys are skipped, and neither written nor audited again.
        again = rows()[1:]
        again.append(OutboxMessage(**{**model_to_dict(rows()[0], exclude=["id", "patient", "plan_item"]), "key": "k9"}))
        again[-1].patient = patient
        assert services.create_rows(again, reason="planned") == 1
    assert OutboxMessage.objects.count() == 4 and history.objects.count() == 4


@pytest.mark.postgres
def test_rows_closed_in_one_statement_are_those_of_the_orm_with_their_audit(make_patient: Any, make_item: Any) -> None:
    """``_close`` on PostgreSQL (one UPDATE … RETURNING feeding the audit insert) changes and audits
    what the ORM path does: the pending rows only (a claimed row and one already closed are left
    as they are, unaudited), in one statement, counting the rows it changed."""
    from django.db import transaction
    from django.forms.models import model_to_dict

    patient = make_patient()
    item = make_item(patient, due="2026-07-15")
    history = OutboxMessage.history.model
    states = [OutboxState.PENDING, OutboxState.PENDING, OutboxState.SENDING, OutboxState.CANCELLED, OutboxState.PENDING]

    def rows() -> list[OutboxMessage]:
        made = [
            OutboxMessage(
                key=f"k{n}",
                kind=MessageKind.REMINDER,
                channel="email",
                patient=patient,
                plan_item=item,
                item_version=1,
                offset_days=-n,
                language="fr",
                context={"n": n},
                send_at=z("2026-07-01T07:00:00"),
                next_attempt_at=z("2026-07-01T07:00:00"),
                state=state,
                closed_reason="" if state != OutboxState.CANCELLED else "opted_out",
            )
            for n, state in enumerate(states)
        ]
        services._create_rows_orm(made, reason="planned")
        return list(OutboxMessage.objects.order_by("key"))

    def stored() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        own = {"id", "history_id", "history_date"}
        messages = [
            {k: v for k, v in model_to_dict(m).items() if k != "id"} | {"updated_at": m.updated_at}
            for m in OutboxMessage.objects.order_by("key")
        ]
        entries = [
            {f.attname: getattr(h, f.attname) for f in history._meta.concrete_fields if f.attname not in own}
            for h in history.objects.order_by("key", "history_id")
        ]
        return messages, entries

    class _Undo(Exception):
        pass

    closing = z("2026-06-30T10:00:00")
    with time_machine.travel(closing, tick=False):
        try:
            with transaction.atomic():
                made = rows()
                pks = [r.pk for r in made]
                assert services._close_orm(pks, state="cancelled", reason="replanned", now=closing) == 3
                reference = stored()
                raise _Undo
        except _Undo:
            pass
        assert not OutboxMessage.objects.exists() and not history.objects.exists()
        made = rows()
        with CaptureQueriesContext(connection) as ctx:
            assert services._close(made, state="cancelled", reason="replanned", now=closing) == 3
        assert len(ctx.captured_queries) == 1
    assert stored() == reference
    messages, entries = reference
    assert [(m["state"], m["closed_reason"]) for m in messages] == [
        ("cancelled", "replanned"),
        ("cancelled", "replanned"),
        ("sending", ""),
        ("cancelled", "opted_out"),
        ("cancelled", "replanned"),
    ]
    updates = [(e["key"], e["state"], e["history_change_reason"]) for e in entries if e["history_type"] == "~"]
    assert updates == [(key, "cancelled", "replanned") for key in ("k0", "k1", "k4")]
