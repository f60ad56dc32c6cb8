"""``manage.py demo_data`` (issue 2, item 7): realistic booklets across every protocol and scenario."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from itertools import pairwise

import pytest
from django.core.management import call_command
from django.utils import timezone

from patients.management.commands import demo_data
from patients.models import (
    CareTeam,
    Comedication,
    DentalEvent,
    DoseRecord,
    LabResult,
    Patient,
    Protocol,
    StaffMembership,
    TreatmentCourse,
    User,
)
from patients.units import corrected_calcium, normalise

pytestmark = pytest.mark.django_db
TEAM = "Démo test"


@pytest.fixture
def rebuilt(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The plan rebuild belongs to scheduling; here we check it is asked for exactly the new patients."""
    calls: list[list[int]] = []

    def fake(ids: list[int]) -> int:
        calls.append(list(ids))
        return len(ids)

    monkeypatch.setattr(demo_data, "_rebuild_plans", fake)
    return calls


def _run(*args: str) -> str:
    out = StringIO()
    call_command("demo_data", "--team", TEAM, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_forty_patients_cover_every_protocol_and_scenario(rebuilt: list[list[int]]) -> None:
    output = _run("--patients", "40", "--seed", "7", "--batch", "15")
    team = CareTeam.objects.get(name=TEAM)
    patients = Patient.objects.filter(care_team=team)
    assert patients.count() == 40
    assert team.timezone == "Europe/Paris"
    assert rebuilt == [sorted(patients.values_list("pk", flat=True))]

    per_protocol = {p: TreatmentCourse.objects.filter(patient__care_team=team, protocol=p).count() for p in Protocol}
    assert all(n > 0 for n in per_protocol.values()), per_protocol
    antiresorptive = {p: n for p, n in per_protocol.items() if p != Protocol.VITAMIN_D}
    assert per_protocol[Protocol.DENOSUMAB_OP] == max(antiresorptive.values())  # the majority

    today = timezone.localdate()
    live = DoseRecord.objects.filter(patient__care_team=team, voided_at__isnull=True)
    dmab_op_days: dict[int, list] = defaultdict(list)
    for dose in live.filter(course__protocol=Protocol.DENOSUMAB_OP).order_by("given_on"):
        dmab_op_days[dose.patient_id].append(dose.given_on)
    gaps = [(b - a).days for days in dmab_op_days.values() for a, b in pairwise(days)]
    assert any(gap > 183 + 28 for gap in gaps), "a late denosumab dose"
    assert any(160 <= gap <= 200 for gap in gaps), "on-time doses"
    running = set(
        TreatmentCourse.objects.filter(protocol=Protocol.DENOSUMAB_OP, stop_date=None).values_list(
            "patient_id", flat=True
        )
    )
    overdue = [pid for pid, days in dmab_op_days.items() if pid in running and days[-1] + timedelta(days=183) < today]
    assert overdue, "a denosumab dose overdue today"
    onco_days: dict[int, list] = defaultdict(list)
    for dose in live.filter(course__protocol=Protocol.DENOSUMAB_ONCO).order_by("given_on"):
        onco_days[dose.patient_id].append(dose.given_on)
    assert any((b - a).days >= 49 for days in onco_days.values() for a, b in pairwise(days)), "a missed monthly dose"

    labs = LabResult.objects.filter(patient__care_team=team, voided_at__isnull=True)
    assert labs.filter(test="calcium_total", corrected_calcium_mmol_l__lt=Decimal("2.20")).exists()
    assert labs.filter(test="25ohd", value__lt=20).exists()
    assert labs.filter(test="25ohd", unit_entered="nmol/L").exists() and labs.filter(unit_entered="ng/mL").exists()
    assert DentalEvent.objects.filter(
        patient__care_team=team, event="extraction", date__gte=today - timedelta(days=60)
    ).exists()
    stopped = TreatmentCourse.objects.filter(patient__care_team=team, stop_date__isnull=False)
    assert stopped.exists() and not stopped.filter(stop_reason="").exists()
    assert stopped.filter(protocol=Protocol.DENOSUMAB_OP).exclude(consolidation="").exists()
    assert live.filter(product="cholecalciferol").exists()
    assert not live.filter(given_on__gte=today).exists() and not labs.filter(drawn_on__gte=today).exists()
    assert "Added 40 patients" in output


def test_bulk_rows_are_what_clean_would_store(rebuilt: list[list[int]]) -> None:
    """bulk inserts skip clean(): the command computes local dates and normalised values itself."""
    _run("--patients", "12", "--seed", "3")
    team = CareTeam.objects.get(name=TEAM)
    for dose in DoseRecord.objects.filter(patient__care_team=team).select_related("patient", "course"):
        assert dose.given_on == dose.patient.local_date(dose.given_at)
        assert timezone.is_aware(dose.given_at)
        if dose.voided_at is None:
            dose.full_clean()
    for lab in LabResult.objects.filter(patient__care_team=team).select_related("patient"):
        assert lab.drawn_on == lab.patient.local_date(lab.drawn_at)
        assert lab.value == normalise(lab.test, lab.value_entered, lab.unit_entered)
        if lab.test == "calcium_total":
            assert lab.corrected_calcium_mmol_l == corrected_calcium(lab.value, lab.albumin_g_l).quantize(
                Decimal("0.001")
            )
        lab.full_clean()
    for model in (Patient, TreatmentCourse, DentalEvent, Comedication):
        for row in model.objects.filter(**({"care_team": team} if model is Patient else {"patient__care_team": team})):
            row.full_clean()
    patient = Patient.objects.filter(care_team=team).exclude(risk_factors=[]).first()
    assert patient is None or isinstance(patient.risk_factors, list)


def test_demo_logins_and_rerun_adds_patients_without_crashing(rebuilt: list[list[int]]) -> None:
    output = _run("--patients", "10", "--seed", "1")
    assert "nurse@carnet.localhost" in output and "carnet-demo" in output
    _run("--patients", "5", "--seed", "1")  # the same seed again: new rows, no clash

    team = CareTeam.objects.get(name=TEAM)
    assert Patient.objects.filter(care_team=team).count() == 15
    assert [len(ids) for ids in rebuilt] == [10, 5]
    assert not set(rebuilt[0]) & set(rebuilt[1])
    for email, role in (
        ("nurse@carnet.localhost", "nurse"),
        ("physician@carnet.localhost", "physician"),
        ("admin@carnet.localhost", "team_admin"),
    ):
        user = User.objects.get(email=email)
        assert user.check_password("carnet-demo") and user.is_staff and user.role == role
        assert StaffMembership.objects.get(user=user, care_team=team).role == role
    patient_user = User.objects.get(email="patient@carnet.localhost")
    assert patient_user.check_password("carnet-demo") and not patient_user.is_staff
    assert Patient.objects.get(user=patient_user).care_team == team


def test_demo_nurse_can_open_the_admin(rebuilt: list[list[int]], client: object) -> None:
    _run("--patients", "8", "--seed", "5")
    assert client.login(email="nurse@carnet.localhost", password="carnet-demo")  # type: ignore[attr-defined]
    response = client.get("/admin/patients/patient/")  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert response.context["cl"].result_count == 8
