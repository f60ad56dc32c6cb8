#!/usr/bin/env python
"""Re-planning everyone from their facts: patients per second on one core.

    python bench/bench_replan.py --sample 20000 --runs 3

One process (one core) re-plans a sample of patients with ``scheduling.services.plans_rebuild``,
the production path of the nightly pass and of a rules change: read the facts (``plan_inputs``),
run the pure rules for every patient, diff against the stored plan, write what changed, sync
escalations, and the outbox of the patients whose messages can have changed. The first pass over
patients without a plan builds it (reported apart; a plan loaded without its digest, as the
loader's twins are, gets it then: counted apart). The timed runs re-plan with unchanged facts,
which is what "re-plan everyone" mostly is: the rules still run for everyone, and each plan's
digest (``plan_digest``, stored on its plan state) tells that nothing is to be written without
reading its items. The breakdown times the pure engine alone over the same facts (the reference:
what the rules cost without the database), once after each timed run, so that each run and its
reference share the same minutes. Target: at least 2,000 patients/s per core.

``--processes N`` (default: one per core) also measures the per-core figure as the nightly pass
runs, one worker process per core: N processes (``--worker``, each its own Django and database
connection) re-plan disjoint slices of the sample at once, unchanged facts and the next day
(rolled back); all the patients over the slowest process's time, divided by N, against one
process alone in the same run. The database's own work then shares the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Figure, database_url, median, report, scale_counts, setup_django, timed

TARGET = 2000.0


def sample_ids(count: int) -> list[int]:
    from patients.models import Patient

    return list(Patient.objects.order_by("pk").values_list("pk", flat=True)[:count])


@contextmanager
def count_writes() -> Iterator[Counter[str]]:
    """Count INSERT/UPDATE/DELETE statements sent while the block runs."""
    from django.db import connection

    counts: Counter[str] = Counter()

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            # A plan state's digest alone (a plan loaded as a twin, bench/plan_copies.py, has none
            # until its first re-plan) is counted apart from the plan's own rows.
            only_digest = sql.lstrip().startswith(
                ('UPDATE "scheduling_planstate" SET "digest"', 'UPDATE "scheduling_planstate" AS t SET "digest" ')
            )
            counts["digests" if only_digest else "statements"] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield counts


def engine_only(ids: list[int]) -> tuple[float, float]:
    """(seconds for plan_inputs, seconds for compute_plan) over ``ids``, in batches of 500."""
    from django.utils import timezone

    from patients.models import Patient
    from scheduling import selectors
    from scheduling.rules import engine
    from scheduling.services import patient_today

    config = selectors.rules_config()
    read = compute = 0.0
    now = timezone.now()
    for start in range(0, len(ids), 500):
        patients = list(Patient.objects.filter(pk__in=ids[start : start + 500]))
        today = {p.pk: patient_today(p, now) for p in patients}
        seconds, inputs = timed(lambda p=patients, t=today: selectors.plan_inputs(p, today_by_patient=t))
        read += seconds
        seconds, _ = timed(
            lambda p=patients, t=today, i=inputs: [
                engine.compute_plan(i[x.pk], today=t[x.pk], config=config) for x in p
            ]
        )
        compute += seconds
    return read, compute


def next_day(ids: list[int], *, runs: int) -> tuple[list[float], int, Counter[str]]:
    """Re-plan ``ids`` as of tomorrow, ``runs`` times, each in a transaction rolled back.

    This is the nightly pass's work: statuses and levels move on some items (days late move with
    the calendar on every late item, but they are not stored: ``PlanItem.days_late``), whose
    plans are diffed and their items, escalations, plan states and outbox rows written. Rolled back so
    every run starts from the same stored plans (the commit itself is not timed).
    (seconds per run, plans changed, statements of the last run)
    """
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from scheduling.models import PlanState
    from scheduling.services import plans_rebuild

    tomorrow = timezone.now() + timedelta(days=1)
    times: list[float] = []
    changed = 0
    writes: Counter[str] = Counter()
    for _ in range(runs):
        with transaction.atomic(), count_writes() as counted:
            before = dict(PlanState.objects.filter(patient_id__in=ids).values_list("patient_id", "revision"))
            seconds, _ = timed(lambda: plans_rebuild(patient_ids=ids, now=tomorrow))
            after = dict(PlanState.objects.filter(patient_id__in=ids).values_list("patient_id", "revision"))
            changed = sum(1 for pk, revision in after.items() if before.get(pk) != revision)
            times.append(seconds)
            writes = counted
            transaction.set_rollback(True)
    return times, changed, writes


def _replan_slice(ids: list[int], days: int) -> float:
    """Seconds to re-plan ``ids`` as of ``days`` from now: committed for today (unchanged facts
    write nothing), rolled back for a later day (as ``next_day``)."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from scheduling.services import plans_rebuild

    if days == 0:
        seconds, _ = timed(lambda: plans_rebuild(patient_ids=ids))
        return seconds
    moment = timezone.now() + timedelta(days=days)
    with transaction.atomic():
        elapsed, _ = timed(lambda: plans_rebuild(patient_ids=ids, now=moment))
        transaction.set_rollback(True)
    return elapsed


def worker(offset: int, count: int) -> int:
    """One of ``on_cores``'s processes: re-plan patients ``[offset, offset + count)`` of the
    sample each time a line ``go DAYS`` comes on stdin, answer the seconds on stdout."""
    setup_django()
    ids = sample_ids(offset + count)[offset:]
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] != ["go"]:
            break
        print(json.dumps({"seconds": _replan_slice(ids, int(words[1])), "patients": len(ids)}), flush=True)
    return 0


def on_cores(ids: list[int], *, processes: int, days: int, runs: int) -> list[float]:
    """Patients per second of ``processes`` processes re-planning disjoint slices of ``ids`` at
    once (the nightly pass runs one worker process per core), one figure per run: all the
    patients over the slowest process's time. Each process sets Django up and reads its
    patients before the runs; a run starts in all of them with one line each."""
    share = -(-len(ids) // processes)
    env = {**os.environ, "BENCH_DATABASE_URL": database_url(), "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(index * share), str(share)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a re-planning process did not start")
        rates: list[float] = []
        for _ in range(runs):
            for child in children:
                assert child.stdin is not None
                child.stdin.write(f"go {days}\n")
                child.stdin.flush()
            answers = []
            for child in children:
                assert child.stdout is not None
                answers.append(json.loads(child.stdout.readline()))
            rates.append(sum(a["patients"] for a in answers) / max(a["seconds"] for a in answers))
        return rates
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
        for child in children:
            child.wait(timeout=60)


def run(*, sample: int, runs: int, next_day_sample: int = 5000, command: str = "", processes: int = 0) -> list[Figure]:
    from scheduling.services import plans_rebuild

    ids = sample_ids(sample)
    if not ids:
        raise SystemExit("no patients: load some first (bench/load.py)")
    # The first pass builds any missing plan and warms caches. After bench/load.py it must write
    # nothing: the loaded plans are what the production path computes (the loader's check).
    with count_writes() as writes:
        first, _ = timed(lambda: plans_rebuild(patient_ids=ids))
    # Each timed re-plan is followed by the engine alone over the same facts, so that the reference
    # is measured in the same minutes as each run: this machine's speed moves by a third within
    # minutes, and a reference measured once, after all the runs, moved the ratio with it.
    times: list[float] = []
    reads: list[float] = []
    computes: list[float] = []
    for _ in range(runs):
        seconds, _ = timed(lambda: plans_rebuild(patient_ids=ids))
        times.append(seconds)
        read_seconds, compute_seconds = engine_only(ids)
        reads.append(read_seconds)
        computes.append(compute_seconds)
    rate = len(ids) / median(times)
    read, compute = median(reads), median(computes)
    engine_rate = len(ids) / compute
    patients = scale_counts()["patients"]  # counted once (a count of the patients table)
    scale = f"{len(ids):,} of {patients:,} patients"
    nightly = ids[:next_day_sample]
    day_times, day_changed, day_writes = next_day(nightly, runs=runs)
    day_rate = len(nightly) / median(day_times)

    def against_engine(
        name: str,
        rate: float,
        scale: str,
        extra: dict[str, Any],
        reference: tuple[str, float] = ("pure engine alone (compute_plan)", engine_rate),
    ) -> Figure:
        """A re-planning rate, against the target and ``reference`` (the engine alone over the same facts)."""
        return Figure(
            bench="replan",
            name=name,
            unit="patients/s",
            median=rate,
            target=f"≥ {TARGET:,.0f} patients/s per core",
            met=rate >= TARGET,
            runs=runs,
            reference=reference[0],
            reference_median=reference[1],
            ratio=rate / reference[1],
            scale=scale,
            command=command,
            extra=extra,
        )

    figures = [
        against_engine(
            "re-plan, unchanged facts",
            rate,
            scale,
            {
                "first_pass_patients_per_s": len(ids) / first,
                "first_pass_write_statements": writes["statements"],
                "first_pass_digest_statements": writes["digests"],
                "plan_inputs_ms_per_patient": 1000 * read / len(ids),
                "compute_plan_ms_per_patient": 1000 * compute / len(ids),
                "run_seconds": times,
                "engine_seconds": computes,
                # Each run against the engine measured right after it.
                "round_ratios": [c / t for t, c in zip(times, computes, strict=True)],
            },
        ),
        Figure(
            bench="replan",
            name="pure engine (compute_plan)",
            unit="patients/s",
            median=engine_rate,
            target="— (breakdown)",
            met=True,
            runs=runs,
            scale=scale,
            command=command,
            extra={
                "ms_per_plan": 1000 * compute / len(ids),
                "plan_inputs_ms_per_patient": 1000 * read / len(ids),
                "run_seconds": computes,
            },
        ),
        against_engine(
            "re-plan the next day (the nightly pass's work, rolled back)",
            day_rate,
            f"{len(nightly):,} of {patients:,} patients",
            {
                "plans_changed": day_changed,
                "write_statements": day_writes["statements"],
                "run_seconds": day_times,
            },
        ),
    ]
    if processes >= 2:
        # The per-core figure as the nightly pass runs: one process per core, all at once, the
        # database's own work on the same cores (reference: one process alone, same run).
        for name, chosen, days, alone in (
            ("re-plan, unchanged facts", ids, 0, rate),
            ("re-plan the next day (rolled back)", nightly, 1, day_rate),
        ):
            together = on_cores(chosen, processes=processes, days=days, runs=runs)
            figures.append(
                against_engine(
                    f"{name}, {processes} processes at once, per core",
                    median(together) / processes,
                    f"{len(chosen):,} of {patients:,} patients",
                    {"together_patients_per_s": together, "processes": processes},
                    reference=("one process alone (same run)", alone),
                )
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--next-day-sample", type=int, default=5000, help="patients re-planned as of tomorrow")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="processes re-planning at once for the per-core figures (default: one per core; 1: none)",
    )
    parser.add_argument("--worker", nargs=2, type=int, metavar=("OFFSET", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    setup_django()
    figures = run(
        sample=args.sample,
        runs=args.runs,
        next_day_sample=args.next_day_sample,
        processes=args.processes,
        command=(
            f"python bench/bench_replan.py --sample {args.sample} --runs {args.runs}"
            f" --next-day-sample {args.next_day_sample} --processes {args.processes}"
        ),
    )
    report("replan", figures, scale=scale_counts())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
