"""``manage.py demo_data``: fill a care team with realistic demo booklets, then rebuild their plans."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from tqdm import tqdm

from patients.demo import StoryBuilder, stories_insert
from patients.models import CareTeam, Patient, Role, StaffMembership, User

DEMO_PASSWORD = "carnet-demo"  # noqa: S105  # printed on purpose: demo logins only
DEMO_LOGINS: tuple[tuple[str, str, str, str], ...] = (
    ("nurse@carnet.localhost", Role.NURSE, "Claire", "Moreau"),
    ("physician@carnet.localhost", Role.PHYSICIAN, "Julien", "Fabre"),
    ("admin@carnet.localhost", Role.TEAM_ADMIN, "Nadia", "Haddad"),
)
PATIENT_LOGIN = "patient@carnet.localhost"


@contextmanager
def _bulk_load_settings() -> Iterator[None]:
    """On SQLite, a large page cache for the index B-trees during the load (reset afterwards)."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        previous = cursor.fetchone()[0]
        cursor.execute("PRAGMA cache_size = -524288")  # 512 MiB
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {int(previous)}")


def _rebuild_plans(ids: Sequence[int]) -> int:
    """The stored plan follows the facts: re-plan every patient just inserted."""
    from scheduling.services import plans_rebuild

    return plans_rebuild(patient_ids=ids, progress=True)


class Command(BaseCommand):
    help = (
        "Fill a care team with realistic demo patients across every protocol (on-time, late and missed "
        "doses, low calcium, vitamin D deficiency, recent extraction, stopped courses, consolidation), "
        "create demo logins (password 'carnet-demo'), then rebuild the plans of the new patients. "
        "Rows are bulk-inserted: bulk-loaded demo history is not audited (no simple-history rows). "
        "Re-running adds patients; existing logins and the team are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=int, default=300, help="how many patients to add (default 300)")
        parser.add_argument("--team", default="Carnet démo — Rhumatologie", help="care team name (created if missing)")
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help="random seed (default: derived from the team's patient count, so re-runs differ)",
        )
        parser.add_argument("--batch", type=int, default=5000, help="patients per transaction (default 5000)")

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["patients"]
        batch: int = options["batch"]
        if count < 0:
            raise CommandError("--patients must be 0 or more.")
        if batch < 1:
            raise CommandError("--batch must be at least 1.")
        started = time.monotonic()
        team, _created = CareTeam.objects.get_or_create(
            name=options["team"], defaults={"timezone": "Europe/Paris", "kind": CareTeam.Kind.HOSPITAL_SERVICE}
        )
        staff = self._staff_logins(team)
        seed = options["seed"] if options["seed"] is not None else team.patients.count()
        builder = StoryBuilder(team=team, nurse=staff[Role.NURSE], physician=staff[Role.PHYSICIAN], seed=seed)

        ids: list[int] = []
        kinds: Counter[str] = Counter()
        rows: Counter[str] = Counter()
        first_op: int | None = None
        with (
            _bulk_load_settings(),
            tqdm(
                total=count,
                unit="patient",
                desc="demo booklets",
                file=sys.stderr,
                disable=options.get("verbosity", 1) == 0,
            ) as bar,
        ):
            for offset in range(0, count, batch):
                stories = [builder.build() for _ in range(min(batch, count - offset))]
                with transaction.atomic():
                    new_ids = stories_insert(stories)
                for story in stories:
                    kinds[story.kind] += 1
                    rows["courses"] += len(story.courses)
                    rows["doses"] += len(story.doses)
                    rows["labs"] += len(story.labs)
                    rows["dental events"] += len(story.dental)
                    rows["co-medications"] += len(story.comedications)
                    if first_op is None and story.kind == "denosumab_op":
                        first_op = story.patient["id"]
                ids.extend(new_ids)
                bar.update(len(stories))
        facts_seconds = time.monotonic() - started
        patient_login = self._patient_login(first_op)

        out = self.stdout
        out.write(f"Care team: {team.name} (id {team.pk}, {team.timezone})")
        out.write(
            f"Added {len(ids)} patients in {facts_seconds:.1f} s: "
            + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
        )
        out.write("Rows: " + ", ".join(f"{name} {n}" for name, n in rows.items()))
        out.write(f"Demo logins (password {DEMO_PASSWORD}):")
        for email, role, _first, _last in DEMO_LOGINS:
            out.write(f"  {role:<10} {email}")
        out.write(f"  {'patient':<10} {patient_login or '(no patient to link yet)'}")
        planned = _rebuild_plans(ids)
        out.write(f"Plans rebuilt for {planned} patients; total {time.monotonic() - started:.1f} s.")

    def _staff_logins(self, team: CareTeam) -> dict[str, User]:
        users: dict[str, User] = {}
        for email, role, first, last in DEMO_LOGINS:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(
                    email, DEMO_PASSWORD, role=role, first_name=first, last_name=last, is_staff=True
                )
            StaffMembership.objects.get_or_create(user=user, care_team=team, defaults={"role": role})
            users[role] = user
        return users

    def _patient_login(self, patient_id: int | None) -> str | None:
        user = User.objects.filter(email=PATIENT_LOGIN).first()
        if user is not None and Patient.objects.filter(user=user).exists():
            return PATIENT_LOGIN
        if patient_id is None:
            return None
        patient = Patient.objects.get(pk=patient_id)
        if user is None:
            user = User.objects.create_user(
                PATIENT_LOGIN,
                DEMO_PASSWORD,
                role=Role.PATIENT,
                first_name=patient.first_name,
                last_name=patient.last_name,
            )
        patient.user = user
        patient.email = PATIENT_LOGIN
        patient.consent_email = True
        patient._history_user = user  # type: ignore[attr-defined]  # simple-history reads this attribute
        patient.save(update_fields=["user", "email", "consent_email", "updated_at"])
        return PATIENT_LOGIN
