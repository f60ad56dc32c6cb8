"""The benchmarks, tiny: a few hundred patients, one run each, so the harness cannot rot.

No timing is asserted (the machine is shared and small); each benchmark must produce sane
figures: positive, finite, the counts it claims. The real runs are ``bench/run`` (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from bench import bench_api, bench_delivery, bench_escalation, bench_ical, bench_replan, bench_sweep, load
from bench.common import Figure, markdown_table, report
from scheduling.rules import _native

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PATIENTS = 300


def sane(figure: Figure) -> None:
    assert math.isfinite(figure.median) and figure.median > 0, figure
    assert figure.runs >= 1 and figure.target, figure
    if figure.reference:
        assert figure.reference_median is not None and figure.reference_median > 0, figure
        assert figure.ratio is not None and math.isfinite(figure.ratio) and figure.ratio > 0, figure


@pytest.fixture
def loaded() -> dict[str, int]:
    return load.load(patients=PATIENTS, workers=1, chunk=100, templates=120, progress=False, team_size=200)


def test_loader_and_every_benchmark(loaded: dict[str, int], tmp_path, monkeypatch) -> None:
    from notifications.models import OutboxMessage
    from patients.models import DoseRecord, Patient
    from scheduling.models import PlanItem, PlanState

    # The loader: every patient, years of doses each, plans and reminders built by the services.
    assert loaded["patients"] == PATIENTS == Patient.objects.count()
    assert DoseRecord.objects.count() == loaded["doses"] > 5 * PATIENTS
    assert loaded["planned"] == PATIENTS
    assert PlanItem.objects.values("patient_id").distinct().count() > PATIENTS * 0.9
    assert OutboxMessage.objects.exists()
    oldest = DoseRecord.objects.order_by("given_on").values_list("given_on", flat=True).first()
    newest = DoseRecord.objects.order_by("-given_on").values_list("given_on", flat=True).first()
    assert (newest - oldest).days > 5 * 365  # histories of several years
    # Indexes and constraints are back after the COPY.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'patients_doserecord'")
        assert cursor.fetchone()[0] >= 8

    figures: list[Figure] = []
    revisions = dict(PlanState.objects.values_list("patient_id", "revision"))
    replan = bench_replan.run(sample=100, runs=1, next_day_sample=100, processes=2)
    assert replan[0].extra["plan_inputs_ms_per_patient"] > 0
    # The engine alone is measured once after each timed run, and each run has its ratio.
    assert len(replan[0].extra["engine_seconds"]) == len(replan[0].extra["round_ratios"]) == 1
    assert replan[1].runs == 1 and replan[1].extra["run_seconds"] == replan[0].extra["engine_seconds"]
    # Two processes at once (their own Django, the same database), each on half of the sample.
    assert [f.extra["processes"] for f in replan[3:]] == [2, 2]
    # The loaded plans are what the production path computes: re-planning them writes no row.
    assert replan[0].extra["first_pass_write_statements"] == 0
    # Tomorrow, overdue items are a day later: plans change and are written, then rolled back.
    assert replan[2].extra["plans_changed"] > 0 and replan[2].extra["write_statements"] > 0
    assert dict(PlanState.objects.values_list("patient_id", "revision")) == revisions  # the next days rolled back
    figures += replan
    escalation = bench_escalation.run(runs=1)
    assert escalation[0].extra["overdue_items"] == sum(escalation[0].extra["by_step"].values())
    figures += [f for f in escalation if f.median > 0]
    ical = bench_ical.run(runs=2, years=10)
    assert ical[0].extra["bytes"] > 1000
    assert ical[-1].extra["events"] > 100  # ten years of monthly injections
    figures += ical
    sweep = bench_sweep.run(messages=50, runs=1)
    assert sweep[0].extra["handed_over"] and all(n == 50 for n in sweep[0].extra["handed_over"])
    assert sweep[0].extra["tasks_queued"] == [1]  # one delivery task published per batch of claimed rows
    assert 0 < sweep[1].median < 10_000  # peak RSS in MiB
    figures += sweep
    delivery = bench_delivery.run(email=20, push=10, runs=1)  # raises unless the servers got each message once
    assert [f.extra["messages"] for f in delivery] == [20, 10]
    assert all(c["email"] == 20 and c["push"] == 10 for c in delivery[0].extra["checks"])
    figures += delivery
    if shutil.which("wrk"):
        api = bench_api.run(seconds=1, runs=1, connections=4, workers=1)
        for figure in api:
            assert figure.extra["rps"] > 0 and figure.extra["runs"][0]["requests"] > 0
        figures += api
    for figure in figures:
        sane(figure)
        assert figure.line().startswith(figure.bench)

    path = report("smoke", figures, directory=tmp_path)
    data = json.loads(path.read_text())
    assert len(data["figures"]) == len(figures) and data["machine"]["nproc"] >= 1
    assert data["machine"]["rules"] == ("compiled (mypyc)" if _native.active() else "plain Python")
    assert markdown_table([path]).count("\n") == len(figures) + 1
