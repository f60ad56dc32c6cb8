"""The sweep claims due rows, sends them once, retries with backoff, and gives up visibly."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail

from notifications import delivery, services
from notifications.models import MessageKind, OutboxMessage, OutboxState, SuppressedAddress, SweepRun

from .conftest import paris

pytestmark = pytest.mark.django_db

DRUG_WORDS = re.compile(
    r"denosumab|dénosumab|prolia|xgeva|zol[ée]dron|vitamin|calci|ost[ée]opor|m[ée]tasta|mg\b", re.IGNORECASE
)


@pytest.fixture
def planned(make_patient: Any, make_item: Any) -> Any:
    """A patient with a calcium check due 2026-02-10: reminders on 02-08 and 02-10 at 08:00Z."""
    patient = make_patient(consent_push=False)
    with time_machine.travel(paris("2026-01-15"), tick=False):
        item = make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
    return patient, item


def test_due_rows_are_sent_once_and_marked_with_the_provider_id(planned: Any) -> None:
    patient, _item = planned
    with time_machine.travel(paris("2026-02-08", 8, 59), tick=False):
        assert delivery.outbox_sweep().sent == 0  # 09:00 local has not come yet
    with time_machine.travel(paris("2026-02-08", 9, 0), tick=False):
        stats = delivery.outbox_sweep()
        again = delivery.outbox_sweep()
    assert (stats.sent, again.sent) == (1, 0)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    row = OutboxMessage.objects.get(state=OutboxState.SENT)
    assert message.extra_headers["Message-ID"] == row.provider_id == f"<{row.key}@carnet.localhost>"
    assert message.to == [patient.email]
    assert message.subject == "Carnet : une étape de soin est prévue"
    html = message.alternatives[0][0]
    assert "dans 2 jours" in message.body and "https://carnet.test/app/" in html
    for text in (message.subject, message.body, html):
        assert not DRUG_WORDS.search(text), text
    assert row.sent_at is not None and row.attempts == 1
    assert row.history.filter(state=OutboxState.SENT).exists()  # audited
    assert SweepRun.objects.get(name="outbox").runs == 3


def test_english_patient_gets_english_template(make_patient: Any, make_item: Any) -> None:
    patient = make_patient(consent_push=False, language="en")
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
        delivery.outbox_sweep()
    assert [m.subject for m in mail.outbox] == ["Carnet: a care step is due"]
    assert "A step of your care is due today" in mail.outbox[0].body


def test_item_done_before_send_time_is_not_sent_g(planned: Any) -> None:
    _patient, item = planned
    with time_machine.travel(paris("2026-02-07"), tick=False):
        item.status = "done"  # the calcium was drawn early; the plan closed the item
        item.save()
    with time_machine.travel(paris("2026-02-10", 12), tick=False):
        stats = delivery.outbox_sweep()
    assert stats.sent == 0 and stats.cancelled == 2
    assert mail.outbox == []
    assert set(OutboxMessage.objects.values_list("state", "closed_reason")) == {("cancelled", "item_closed")}


def test_moved_item_row_is_not_sent_even_before_replanning(planned: Any) -> None:
    _patient, item = planned
    item.version = 2
    item.save()
    with time_machine.travel(paris("2026-02-08", 10), tick=False):
        assert delivery.outbox_sweep().sent == 0
    assert OutboxMessage.objects.filter(closed_reason="item_moved").count() == 1


def test_withdrawn_consent_is_honoured_at_send_time(planned: Any) -> None:
    patient, _ = planned
    patient.consent_email = False
    patient.save()
    with time_machine.travel(paris("2026-02-08", 10), tick=False):
        assert delivery.outbox_sweep().sent == 0
    assert OutboxMessage.objects.filter(closed_reason="consent_withdrawn").count() == 1


def test_transient_failure_backs_off_then_dies_and_nurses_hear(settings: Any, planned: Any, nurse: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 1  # nobody listens
    start = paris("2026-02-10", 9, 30)
    delays = []
    with time_machine.travel(start, tick=False):
        delivery.outbox_sweep()
    row = OutboxMessage.objects.get(offset_days=-2)
    for attempt in range(1, 4):
        row.refresh_from_db()
        assert row.state == OutboxState.PENDING and row.attempts == attempt
        delays.append(row.next_attempt_at)
        with time_machine.travel(row.next_attempt_at + timedelta(seconds=1), tick=False):
            delivery.outbox_sweep()
    row.refresh_from_db()
    assert row.state == OutboxState.DEAD and row.attempts == 4 and row.closed_reason == "max_attempts"
    assert "SMTP unavailable" in row.last_error
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(delays)]
    # Exponential with equal jitter: attempt n waits between base·2^(n-1)/2 and base·2^(n-1).
    assert 60 <= gaps[0] <= 121 and 120 <= gaps[1] <= 241
    notice = OutboxMessage.objects.get(kind=MessageKind.UNDELIVERABLE)
    assert notice.recipient_user == nurse and notice.state == OutboxState.PENDING


def test_bounced_address_is_suppressed_without_retry(use_smtp: Any, planned: Any, nurse: Any) -> None:
    patient, _ = planned
    use_smtp.refuse.add(patient.email)
    with time_machine.travel(paris("2026-02-08", 10), tick=False):
        stats = delivery.outbox_sweep()
    assert stats.dead == 1
    assert SuppressedAddress.objects.filter(email=patient.email).exists()
    # The other reminder to that address is cancelled, not tried.
    assert set(OutboxMessage.objects.filter(kind="reminder").values_list("state", flat=True)) == {"dead", "cancelled"}
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        later = delivery.outbox_sweep()
    assert use_smtp.count == 1  # the nurse's notice; nothing more to the bounced address
    assert later.sent + stats.sent == 1
    assert use_smtp.messages[0]["to"] == [nurse.email]


def test_webpush_delivers_encrypted_neutral_payload_with_topic(
    use_push: Any, make_patient: Any, make_item: Any
) -> None:
    patient = make_patient(consent_email=False)
    sub = use_push.subscribe()
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        services.device_register(
            patient=patient, channel="webpush", endpoint=sub.endpoint, p256dh=sub.p256dh, auth=sub.auth
        )
        make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
        stats = delivery.outbox_sweep()
    assert stats.sent == 1, use_push.rejected
    got = use_push.received[0]
    row = OutboxMessage.objects.get(state="sent")
    assert got["topic"] == row.key[:32]
    assert got["payload"]["body"] == "Carnet : une étape de soin est prévue — ouvrez l'application"
    assert not DRUG_WORDS.search(str(got["payload"]))
    assert row.provider_id.startswith(use_push.origin)


def test_push_410_deactivates_device_no_retry_storm_f(
    use_push: Any, make_patient: Any, make_item: Any, nurse: Any
) -> None:
    patient = make_patient(consent_email=False)
    sub = use_push.subscribe()
    use_push.gone.add(sub.endpoint.removeprefix(use_push.origin))
    with time_machine.travel(paris("2026-02-01", 10), tick=False):
        device = services.device_register(
            patient=patient, channel="webpush", endpoint=sub.endpoint, p256dh=sub.p256dh, auth=sub.auth
        )
        make_item(patient, due="2026-02-01", kind="vitamin_d_dose", protocol="vitamin_d_50000iu")
        make_item(patient, due="2026-02-10", kind="calcium_check")
        services.outbox_sync(patients=[patient])
        delivery.outbox_sweep()
    for day in ("2026-02-08", "2026-02-10", "2026-02-11"):
        with time_machine.travel(paris(day, 10), tick=False):
            delivery.outbox_sweep()
            services.outbox_sync(patients=[patient])
    device.refresh_from_db()
    assert not device.active and "410" in device.deactivation_reason
    assert len(use_push.rejected) == 1  # one request, no retry storm
    states = sorted(OutboxMessage.objects.filter(kind="reminder").values_list("state", flat=True))
    assert states == ["cancelled", "cancelled", "dead"]
    assert OutboxMessage.objects.filter(kind=MessageKind.UNDELIVERABLE, recipient_user=nurse).count() == 1


def test_a_crashed_senders_rows_come_back_after_the_lease(planned: Any, settings: Any) -> None:
    settings.NOTIFY_LEASE_SECONDS = 120
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        token, rows = delivery.outbox_claim(limit=10)  # ... and the worker dies here
        assert len(rows) == 2
        assert delivery.outbox_claim(limit=10)[1] == []  # leased: nobody else takes them
    with time_machine.travel(paris("2026-02-10", 10, 2) + timedelta(seconds=1), tick=False):
        stats = delivery.outbox_sweep()
    assert stats.sent == 2 and len(mail.outbox) == 2
    # The dead claim cannot overwrite the outcome.
    assert delivery._finish(rows[0], token, state=OutboxState.PENDING) is False


def test_two_claims_never_share_a_row(make_patient: Any, make_item: Any) -> None:
    with time_machine.travel(paris("2026-02-10", 10), tick=False):
        for _ in range(5):
            p = make_patient(consent_push=False)
            make_item(p, due="2026-02-10", kind="calcium_check")
            services.outbox_sync(patients=[p])
        _, first = delivery.outbox_claim(limit=3)
        _, second = delivery.outbox_claim(limit=3)
    assert len(first) == 3 and len(second) == 2
    assert not {r.pk for r in first} & {r.pk for r in second}


def test_digest_replaces_a_flood(
    make_patient: Any, make_item: Any, open_escalation: Any, nurse: Any, settings: Any
) -> None:
    settings.NOTIFY_DIGEST_THRESHOLD = 5
    opened = paris("2026-07-16", 9)
    with time_machine.travel(opened, tick=False):
        for _ in range(7):
            p = make_patient(consent_email=False, consent_push=False)
            item = make_item(p, due="2026-07-15", status="overdue_L1", level="L1")
            open_escalation(item, level="L1", severity="W", notify=["patient", "nurse"], at=opened)
            services.outbox_sync(patients=[p])
        stats = delivery.outbox_sweep()
    assert stats.sent == 1
    assert [m.to for m in mail.outbox] == [[nurse.email]]
    assert mail.outbox[0].subject == "Carnet : résumé quotidien des alertes"
    assert "7 alertes" in mail.outbox[0].body
    assert OutboxMessage.objects.filter(state=OutboxState.DIGESTED).count() == 7
    # The same day, a new alert folds into tomorrow's digest, not a message of its own.
    with time_machine.travel(paris("2026-07-16", 15), tick=False):
        p = make_patient(consent_email=False, consent_push=False)
        item = make_item(p, due="2026-07-15", status="overdue_L1", level="L1")
        open_escalation(item, level="L1", severity="W", notify=["nurse"], at=paris("2026-07-16", 15))
        services.outbox_sync(patients=[p])
        delivery.outbox_sweep()
    assert len(mail.outbox) == 1
    tomorrow = OutboxMessage.objects.get(kind=MessageKind.DIGEST, state=OutboxState.PENDING)
    assert tomorrow.context["count"] == 1 and tomorrow.context["day"] == "2026-07-17"


def test_acknowledged_escalation_is_not_repeated(
    make_patient: Any, make_item: Any, open_escalation: Any, nurse: Any
) -> None:
    patient = make_patient(consent_push=False)
    opened = paris("2026-07-16", 9)
    with time_machine.travel(opened, tick=False):
        item = make_item(patient, due="2026-07-15", status="overdue_L1", level="L1")
        esc = open_escalation(item, level="L1", severity="W", notify=["patient", "nurse"], at=opened)
        services.outbox_sync(patients=[patient])
        delivery.outbox_sweep()
    assert sorted(m.to[0] for m in mail.outbox) == sorted([patient.email, nurse.email])
    esc.acknowledged_at, esc.acknowledged_by = opened, nurse  # scheduling.services.escalation_acknowledge
    esc.save()
    for day in ("2026-07-19", "2026-07-22", "2026-07-25"):
        with time_machine.travel(paris(day, 10), tick=False):
            delivery.outbox_sweep()
    assert len(mail.outbox) == 2
    assert OutboxMessage.objects.filter(escalation=esc, closed_reason="acknowledged").count() == 2


def test_health_endpoint_reports_states_lag_and_last_sweep(client: Any, planned: Any) -> None:
    with time_machine.travel(paris("2026-02-08", 9, 30), tick=False):
        response = client.get("/health/outbox")
    assert response.status_code == 503  # no sweep has ever run
    body = response.json()
    assert body["counts"]["pending"] == 2 and body["due_unsent"] == 1
    assert body["lag_seconds"] == 1800.0 and body["last_sweep_at"] is None
    with time_machine.travel(paris("2026-02-08", 9, 31), tick=False):
        delivery.outbox_sweep()
        response = client.get("/health/outbox")
    body = response.json()
    assert response.status_code == 200 and body["healthy"]
    assert body["counts"]["sent"] == 1 and body["lag_seconds"] == 0.0
    assert body["last_sweep_at"].startswith("2026-02-08T08:31")


def test_admin_shows_outbox_health(admin_client: Any, planned: Any) -> None:
    response = admin_client.get("/admin/notifications/outboxmessage/")
    assert response.status_code == 200
    assert b"outbox-health" in response.content and b"Due but unsent" in response.content
