#!/usr/bin/env python
"""Escalation pass: find every overdue plan item and its ladder step, across all patients.

    python bench/bench_escalation.py --runs 5

Two reads, both on the stored plan:

- ``overdue + step``: every open item whose due date has passed, streamed, with its ladder step
  today taken from the rules' own escalation dates stored on the item (``PlanItem.escalation``:
  level → first day of that level), i.e. the highest level whose day has come;
- ``nightly find``: the production selector of the nightly pass
  (``scheduling.selectors.patients_with_open_items``), the patients whose plan needs re-running.

Reference: the bare SQL count of the same overdue rows (what the database alone needs).
Target: under 10 s at a million patients.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, median, ratio_of, repeat, report, scale_counts, setup_django

TARGET_SECONDS = 10.0


def overdue_steps() -> Counter[str]:
    """Every overdue open item with its ladder step today, streamed (counted by step).

    The production selector (``scheduling.selectors.overdue_steps``): the step is computed by
    the database from the rules' dates stored on the item, read by index-only scans, so Python
    receives one small tuple per item.
    """
    from django.utils import timezone

    from scheduling import selectors

    steps: Counter[str] = Counter()
    for _item, _patient, step in selectors.overdue_steps(today=timezone.localdate()):
        steps[step] += 1
    return steps


def nightly_find() -> int:
    """The patients the nightly pass re-plans, read as ``services.plans_refresh_due`` reads them.

    A plain query, as production runs it: through ``.iterator()`` (a server-side cursor planned
    for the first 10 % of rows) PostgreSQL walked the patient index over every plan item instead.
    """
    from django.utils import timezone

    from scheduling import selectors

    return len(list(selectors.patients_with_open_items(due_on_or_before=timezone.localdate() + timedelta(days=1))))


def raw_count() -> int:
    from django.db import connection
    from django.utils import timezone

    from scheduling.models import OPEN_STATUSES

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM scheduling_planitem WHERE status = ANY(%s) AND due < %s",
            [list(OPEN_STATUSES), timezone.localdate()],
        )
        return int(cursor.fetchone()[0])


def run(*, runs: int, command: str = "") -> list[Figure]:
    counts = scale_counts()
    scale = f"{counts['patients']:,} patients, {counts['plan_items']:,} plan items"
    steps = overdue_steps()
    times = repeat(overdue_steps, runs=runs)
    reference = repeat(raw_count, runs=runs)
    found = raw_count()
    find_times = repeat(nightly_find, runs=runs)
    patients = nightly_find()
    return [
        Figure(
            bench="escalation",
            name="overdue items + ladder step",
            unit="s",
            median=median(times),
            target=f"< {TARGET_SECONDS:.0f} s",
            met=median(times) < TARGET_SECONDS,
            runs=runs,
            reference="bare SQL count of the same rows",
            reference_median=median(reference),
            ratio=ratio_of(median(times), median(reference)),
            scale=scale,
            command=command,
            extra={"overdue_items": found, "by_step": dict(steps), "run_seconds": times},
        ),
        Figure(
            bench="escalation",
            name="nightly pass: patients to re-plan",
            unit="s",
            median=median(find_times),
            target=f"< {TARGET_SECONDS:.0f} s",
            met=median(find_times) < TARGET_SECONDS,
            runs=runs,
            scale=scale,
            command=command,
            extra={"patients": patients, "run_seconds": find_times},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    setup_django()
    figures = run(runs=args.runs, command=f"python bench/bench_escalation.py --runs {args.runs}")
    report("escalation", figures, scale=scale_counts())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
