"""The beat sweep claims due rows and hands them over in batches; workers send what is still theirs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail

from notifications import delivery, services, tasks
from notifications.models import OutboxMessage, OutboxState, SweepRun

from .conftest import paris

pytestmark = pytest.mark.django_db


@pytest.fixture
def due_reminders(make_patient: Any, make_item: Any) -> list[Any]:
    """Five patients, each with two reminders of a calcium check due 2026-02-10 (both due by 10:00)."""
    patients = []
    with time_machine.travel(paris("2026-01-15"), tick=False):
        for _ in range(5):
            patient = make_patient(consent_push=False)
            make_item(patient, due="2026-02-10", kind="calcium_check")
            patients.append(patient)
        services.outbox_sync(patients=patients)
    assert OutboxMessage.objects.count() == 10
    return patients


class Handed(list[tuple[str, list[int]]]):
    def __call__(self, token: str, ids: list[int]) -> None:
        self.append((token, ids))


def test_sweep_claims_and_hands_over_batches_without_sending(due_reminders: Any, settings: Any) -> None:
    settings.NOTIFY_HANDOVER_LEASE_SECONDS = 60
    handed = Handed()
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        stats = delivery.outbox_sweep(batch_size=4, hand_over=handed)
        assert SweepRun.objects.get(name="outbox").last_claimed == 10
        assert delivery.outbox_sweep(batch_size=4, hand_over=handed).claimed == 0  # all leased
    assert stats.claimed == 10 and stats.sent == 0 and mail.outbox == []
    assert [len(ids) for _token, ids in handed] == [4, 4, 2]
    assert len({token for token, _ in handed}) == 3
    assert sorted(i for _, ids in handed for i in ids) == sorted(OutboxMessage.objects.values_list("pk", flat=True))
    lease_end = paris("2026-02-10", 10) + timedelta(seconds=60)
    assert set(OutboxMessage.objects.values_list("state", "claimed_until")) == {(OutboxState.SENDING, lease_end)}
    # The workers' side: each batch is sent once, by the task that holds its token.
    with time_machine.travel(paris("2026-02-10", 10, 0) + timedelta(seconds=5), tick=False):
        sent = [tasks.outbox_deliver_batch(token, ids) for token, ids in handed]
        again = tasks.outbox_deliver_batch(*handed[0])  # a redelivered message
    assert sent == [4, 4, 2] and again == 0
    assert len(mail.outbox) == 10
    assert set(OutboxMessage.objects.values_list("state", flat=True)) == {OutboxState.SENT}


def test_the_worker_renews_the_lease_for_the_send(due_reminders: Any, settings: Any) -> None:
    settings.NOTIFY_HANDOVER_LEASE_SECONDS, settings.NOTIFY_LEASE_SECONDS = 60, 300
    handed = Handed()
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        delivery.outbox_sweep(batch_size=10, hand_over=handed)
    token, ids = handed[0]
    taken = paris("2026-02-10", 10) + timedelta(seconds=50)  # the batch waited 50 s in the queue
    with time_machine.travel(taken, tick=False):
        rows = delivery.outbox_claimed_rows(token=token, ids=ids, renew=True)
    assert len(rows) == 10 and {r.claimed_until for r in rows} == {taken + timedelta(seconds=300)}
    # A sweep after the hand-over lease would have run out finds nothing to claim again.
    with time_machine.travel(taken + timedelta(seconds=30), tick=False):
        assert delivery.outbox_claim_ids(limit=10, lease=60)[1] == []


def test_a_lost_batch_is_claimed_again_and_its_late_task_sends_nothing(due_reminders: Any, settings: Any) -> None:
    settings.NOTIFY_HANDOVER_LEASE_SECONDS = 60
    lost, found = Handed(), Handed()
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        delivery.outbox_sweep(batch_size=10, hand_over=lost)  # ... and the broker loses the task
    with time_machine.travel(paris("2026-02-10", 10, 1) + timedelta(seconds=1), tick=False):
        assert delivery.outbox_sweep(batch_size=10, hand_over=found).claimed == 10
        assert tasks.outbox_deliver_batch(*found[0]) == 10
        assert tasks.outbox_deliver_batch(*lost[0]) == 0  # redelivered at last: no longer its rows
    assert sorted(lost[0][1]) == sorted(found[0][1])
    assert len(mail.outbox) == 10
    assert OutboxMessage.objects.filter(state=OutboxState.SENT, attempts=1).count() == 10


def test_no_more_than_max_in_flight_rows_wait_for_workers(due_reminders: Any) -> None:
    handed = Handed()
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        assert delivery.outbox_sweep(batch_size=4, hand_over=handed, max_in_flight=6).claimed == 6
        assert delivery.outbox_sweep(batch_size=4, hand_over=handed, max_in_flight=6).claimed == 0
        tasks.outbox_deliver_batch(*handed[0])  # the workers take a batch: room for four more
        assert delivery.outbox_sweep(batch_size=4, hand_over=handed, max_in_flight=6).claimed == 4
    assert [len(ids) for _, ids in handed] == [4, 2, 4]


def test_a_batch_the_broker_refuses_is_given_back_at_once(due_reminders: Any) -> None:
    def broker_down(token: str, ids: list[int]) -> None:
        raise ConnectionError("broker unreachable")

    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        with pytest.raises(ConnectionError):
            delivery.outbox_sweep(batch_size=4, hand_over=broker_down)
        assert OutboxMessage.objects.filter(state=OutboxState.SENDING).count() == 0
        assert delivery.outbox_backlog() == 10
        assert delivery.outbox_sweep().sent == 10  # nothing waited for a lease


def test_the_beat_task_publishes_one_delivery_task_per_batch(
    due_reminders: Any, settings: Any, monkeypatch: Any
) -> None:
    settings.NOTIFY_BATCH_SIZE = 4
    published: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.outbox_deliver_batch, "apply_async", lambda args, **_: published.append(args))
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        assert tasks.outbox_sweep() == 10
    assert [len(ids) for _token, ids in published] == [4, 4, 2] and mail.outbox == []


def test_expired_leases_come_first_then_due_rows_each_once(due_reminders: Any) -> None:
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        _token, crashed = delivery.outbox_claim_ids(limit=3, lease=60)  # ... and that sender died
    handed = Handed()
    with time_machine.travel(paris("2026-02-10", 10, 1) + timedelta(seconds=1), tick=False):
        assert delivery.outbox_sweep(batch_size=4, hand_over=handed).claimed == 10
    assert [len(ids) for _, ids in handed] == [4, 4, 2]
    assert set(crashed) < set(handed[0][1])  # the expired leases, in the first batch
    every = [i for _, ids in handed for i in ids]
    assert len(every) == len(set(every)) == 10
    tokens = dict(OutboxMessage.objects.values_list("pk", "claim_token"))
    assert all(tokens[i] == token for token, ids in handed for i in ids)
