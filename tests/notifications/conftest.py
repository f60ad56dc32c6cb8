from __future__ import annotations

import socket
import threading
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.servers.fixtures import (  # noqa: F401 — loopback-server fixtures shared with tests/e2e
    apns_server,
    fcm_server,
    push_server,
    smtp_server,
    use_push,
    use_smtp,
    vapid_keys,
)

PARIS = ZoneInfo("Europe/Paris")
UTC = ZoneInfo("UTC")
OP = "denosumab_op_60mg_q6m"


def paris(day: str, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.combine(date.fromisoformat(day), time(hour, minute), PARIS)


@pytest.fixture(autouse=True)
def _locmem_email(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFY_RETRY_BASE_SECONDS = 60
    settings.NOTIFY_MAX_ATTEMPTS = 4
    settings.SITE_URL = "https://carnet.test"


@pytest.fixture
def team(db: Any) -> Any:
    from patients.models import CareTeam

    return CareTeam.objects.create(name="Rhumatologie Lyon-Sud")


def _staff(team: Any, email: str, role: str, **extra: Any) -> Any:
    from patients.models import StaffMembership, User

    user = User.objects.create_user(email, "pw-staff-123", role=role, is_staff=True, **extra)
    StaffMembership.objects.create(user=user, care_team=team, role=role)
    return user


@pytest.fixture
def nurse(team: Any) -> Any:
    return _staff(team, "nurse@example.org", "nurse", first_name="Nadia", language="fr")


@pytest.fixture
def nurse2(team: Any) -> Any:
    return _staff(team, "nurse2@example.org", "nurse", first_name="Noé", language="en")


@pytest.fixture
def physician(team: Any) -> Any:
    return _staff(team, "doctor@example.org", "physician", first_name="Paul")


@pytest.fixture
def make_patient(team: Any) -> Any:
    from patients.models import Patient

    counter = {"n": 0}

    def make(**fields: Any) -> Any:
        counter["n"] += 1
        values: dict[str, Any] = {
            "care_team": team,
            "first_name": "Jeanne",
            "last_name": f"Martin{counter['n']}",
            "birth_date": date(1958, 4, 12),
            "sex": "F",
            "email": f"jeanne{counter['n']}@example.org",
            "consent_email": True,
            "consent_push": True,
            "language": "fr",
            "timezone": "Europe/Paris",
        }
        values.update(fields)
        return Patient.objects.create(**values)

    return make


@pytest.fixture
def make_item() -> Any:
    """A stored plan item, as plans_sync_batch would write it (the rules are tested elsewhere)."""
    from scheduling.models import PlanItem

    def make(
        patient: Any,
        *,
        due: str,
        kind: str = "injection",
        protocol: str = OP,
        key: str | None = None,
        status: str = "scheduled",
        version: int = 1,
        level: str = "",
    ) -> Any:
        return PlanItem.objects.create(
            patient=patient,
            key=key or f"{kind}:{protocol}:{due}",
            kind=kind,
            protocol=protocol,
            rule="OP-01",
            due=date.fromisoformat(due),
            status=status,
            version=version,
            level=level,
        )

    return make


@pytest.fixture
def open_escalation() -> Any:
    from scheduling.models import Escalation

    def make(item: Any, *, level: str, severity: str, notify: list[str], at: datetime) -> Any:
        return Escalation.objects.create(
            plan_item=item,
            patient=item.patient,
            level=level,
            rule=item.rule,
            severity=severity,
            notify=notify,
            opened_at=at,
            opened_on=at.astimezone(PARIS).date(),
        )

    return make


@pytest.fixture
def due_emails(make_patient: Any, make_item: Any) -> list[Any]:
    """Four patients by email, each with a calcium check due 2026-02-10: eight reminders due that day."""
    import time_machine

    from notifications.services import outbox_sync  # lazy: the apps load after this module

    patients = [make_patient(consent_push=False) for _ in range(4)]
    with time_machine.travel(paris("2026-01-15"), tick=False):
        for patient in patients:
            make_item(patient, due="2026-02-10", kind="calcium_check")
        outbox_sync(patients=patients)
    return patients


class ScriptedSMTP:
    """An SMTP server on loopback answering from scripts, for the PIPELINING and chaining tests: per
    verb (``end`` for a message's final dot), a list of replies used in turn (then 250, or 354 to
    DATA); ``b"drop"`` closes the connection instead of replying; one session."""

    def __init__(self, replies: dict[str, list[bytes]], *, pipelining: bool = True) -> None:
        self.replies = replies
        self.pipelining = pipelining
        self.lines: list[bytes] = []
        self.ends = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _reply(self, verb: str) -> bytes:
        script = self.replies.get(verb) or []
        return script.pop(0) if script else (b"354 go" if verb == "data" else b"250 ok")

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as reader:
            conn.sendall(b"220 scripted\r\n")
            in_data = False
            for line in reader:
                self.lines.append(line)
                if in_data:
                    if line != b".\r\n":
                        continue
                    in_data, verb = False, "end"
                    self.ends += 1
                else:
                    verb = line.split()[0].decode().lower()
                reply = self._reply(verb)
                if verb == "ehlo":
                    reply = (
                        b"250-scripted\r\n250-PIPELINING\r\n250 SIZE 1000000" if self.pipelining else b"250 scripted"
                    )
                if reply == b"drop":
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                conn.sendall(reply + b"\r\n")
                in_data = verb == "data" and reply.startswith(b"354")
                if reply.startswith(b"421") or verb == "quit":
                    return
