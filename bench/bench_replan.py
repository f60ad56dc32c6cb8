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
what the rules cost without the database). Target: at least 2,000 patients/s per core.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, median, repeat, report, scale_counts, setup_django, timed

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
            # The late items' days late and their plan state (scheduling.services._days_late_sync):
            # a first pass after the loader or a deploy writes them once a day per patient.
            days_late = sql.lstrip().startswith("UPDATE scheduling_planitem SET days_late") or '"late_on"' in sql
            counts["digests" if only_digest else "days_late" if days_late else "statements"] += 1
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


class _RolledBack(Exception):
    pass


def next_day(ids: list[int], *, runs: int) -> tuple[list[float], int, Counter[str]]:
    """Re-plan ``ids`` as of tomorrow, ``runs`` times, each in a transaction rolled back.

    This is the nightly pass's work: days late move with the calendar on every late item (one
    statement a batch writes them, ``_days_late_sync``), and statuses and levels on some, whose
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
        try:
            with transaction.atomic(), count_writes() as writes:
                before = dict(PlanState.objects.filter(patient_id__in=ids).values_list("patient_id", "revision"))
                seconds, _ = timed(lambda: plans_rebuild(patient_ids=ids, now=tomorrow))
                after = dict(PlanState.objects.filter(patient_id__in=ids).values_list("patient_id", "revision"))
                changed = sum(1 for pk, revision in after.items() if before.get(pk) != revision)
                times.append(seconds)
                raise _RolledBack
        except _RolledBack:
            pass
    return times, changed, writes


def run(*, sample: int, runs: int, next_day_sample: int = 5000, command: str = "") -> list[Figure]:
    from scheduling.services import plans_rebuild

    ids = sample_ids(sample)
    if not ids:
        raise SystemExit("no patients: load some first (bench/load.py)")
    # The first pass builds any missing plan and warms caches. After bench/load.py it must write
    # nothing: the loaded plans are what the production path computes (the loader's check).
    with count_writes() as writes:
        first, _ = timed(lambda: plans_rebuild(patient_ids=ids))
    times = repeat(lambda: plans_rebuild(patient_ids=ids), runs=runs, warmup=0)
    rate = len(ids) / median(times)
    read, compute = engine_only(ids)
    engine_rate = len(ids) / compute
    scale = f"{len(ids):,} of {scale_counts()['patients']:,} patients"
    nightly = ids[:next_day_sample]
    day_times, day_changed, day_writes = next_day(nightly, runs=runs)
    day_rate = len(nightly) / median(day_times)

    def against_engine(name: str, rate: float, scale: str, extra: dict[str, Any]) -> Figure:
        """A re-planning rate, against the target and the engine alone over the same facts."""
        return Figure(
            bench="replan",
            name=name,
            unit="patients/s",
            median=rate,
            target=f"≥ {TARGET:,.0f} patients/s per core",
            met=rate >= TARGET,
            runs=runs,
            reference="pure engine alone (compute_plan)",
            reference_median=engine_rate,
            ratio=rate / engine_rate,
            scale=scale,
            command=command,
            extra=extra,
        )

    return [
        against_engine(
            "re-plan, unchanged facts",
            rate,
            scale,
            {
                "first_pass_patients_per_s": len(ids) / first,
                "first_pass_write_statements": writes["statements"],
                "first_pass_digest_statements": writes["digests"],
                "first_pass_days_late_statements": writes["days_late"],
                "plan_inputs_ms_per_patient": 1000 * read / len(ids),
                "compute_plan_ms_per_patient": 1000 * compute / len(ids),
                "run_seconds": times,
            },
        ),
        Figure(
            bench="replan",
            name="pure engine (compute_plan)",
            unit="patients/s",
            median=engine_rate,
            target="— (breakdown)",
            met=True,
            runs=1,
            scale=scale,
            command=command,
            extra={"ms_per_plan": 1000 * compute / len(ids), "plan_inputs_ms_per_patient": 1000 * read / len(ids)},
        ),
        against_engine(
            "re-plan the next day (the nightly pass's work, rolled back)",
            day_rate,
            f"{len(nightly):,} of {scale_counts()['patients']:,} patients",
            {
                "plans_changed": day_changed,
                "write_statements": day_writes["statements"],
                "days_late_statements": day_writes["days_late"],
                "run_seconds": day_times,
            },
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--next-day-sample", type=int, default=5000, help="patients re-planned as of tomorrow")
    args = parser.parse_args(argv)
    setup_django()
    figures = run(
        sample=args.sample,
        runs=args.runs,
        next_day_sample=args.next_day_sample,
        command=(
            f"python bench/bench_replan.py --sample {args.sample} --runs {args.runs}"
            f" --next-day-sample {args.next_day_sample}"
        ),
    )
    report("replan", figures, scale=scale_counts())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
