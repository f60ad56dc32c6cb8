"""Shared plumbing of the benchmarks: Django against the bench database, timing, medians, reports.

Every benchmark prints one line per figure (median over repeated runs, the reference measured in
the same run, the ratio, the target and whether it is met) and writes the same figures as JSON
under ``bench/results/`` (or ``$BENCH_RESULTS_DIR``), from which ``bench/run`` prints the table
that ``docs/benchmarks.md`` carries.

The database is ``$BENCH_DATABASE_URL`` (default: the private benchmark cluster on port 55999,
see docs/benchmarks.md); ``$DATABASE_URL`` is ignored on purpose so a benchmark never writes into
a development or test database by accident.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:55999/carnet_bench"
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR", str(ROOT / "bench" / "results")))

_django_ready = False


def database_url() -> str:
    """``$BENCH_DATABASE_URL``; else, once Django runs on PostgreSQL (the smoke test), its database."""
    if "BENCH_DATABASE_URL" in os.environ:
        return os.environ["BENCH_DATABASE_URL"]
    from django.conf import settings
    from django.db import connection

    if settings.configured and connection.vendor == "postgresql":
        s = connection.settings_dict
        auth = s["USER"] or ""
        if s.get("PASSWORD"):
            auth += f":{s['PASSWORD']}"
        return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"
    return DEFAULT_DATABASE_URL


def setup_django(settings_module: str = "backend.settings") -> None:
    """Configure Django for the bench database (idempotent). Under pytest, Django is already set up."""
    global _django_ready
    if _django_ready:
        return
    import django
    from django.conf import settings

    if not settings.configured:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
        os.environ.setdefault("CARNET_VAR_DIR", os.environ.get("BENCH_VAR_DIR", "/tmp/carnet-bench-var"))
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        os.environ.setdefault("DJANGO_DEBUG", "0")  # as in service: no query log, no debug cursor
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
        django.setup()
        # Measure a worker's path: the worker has imported its tasks (and through them the
        # services) and frozen its startup heap (backend.celery, backend.heap) before any work.
        from backend.celery import app
        from backend.heap import freeze_startup_heap

        app.loader.import_default_modules()
        freeze_startup_heap()
    _django_ready = True


def migrate() -> None:
    """Bring the bench database's schema up to date (system checks skipped: no URLconf needed)."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0, skip_checks=True)


# --- timing ----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def repeat(fn: Callable[[], Any], *, runs: int, warmup: int = 1, setup: Callable[[], Any] | None = None) -> list[float]:
    """Seconds per run of ``fn`` (``setup`` runs before each, untimed)."""
    times: list[float] = []
    for index in range(warmup + runs):
        if setup is not None:
            setup()
        seconds, _ = timed(fn)
        if index >= warmup:
            times.append(seconds)
    return times


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


# --- results ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One benchmark figure: the measured median against its target and its reference."""

    bench: str
    name: str
    unit: str
    median: float
    target: str
    met: bool
    runs: int
    reference: str = ""
    reference_median: float | None = None
    ratio: float | None = None
    ratio_target: str = ""
    ratio_met: bool | None = None
    scale: str = ""
    command: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def all_met(self) -> bool:
        return self.met and self.ratio_met is not False

    def line(self) -> str:
        parts = [f"{self.bench}/{self.name}: median {fmt(self.median)} {self.unit} over {self.runs} runs"]
        parts.append(f"target {self.target} → {'met' if self.met else 'NOT met'}")
        if self.reference:
            parts.append(f"reference {self.reference} {fmt(self.reference_median)} {self.unit}")
        if self.ratio is not None and self.ratio_target:
            parts.append(
                f"ratio {self.ratio:.2f} (target {self.ratio_target} → {'met' if self.ratio_met else 'NOT met'})"
            )
        elif self.ratio is not None:
            parts.append(f"ratio {self.ratio:.2f}")
        if self.scale:
            parts.append(f"at {self.scale}")
        return "; ".join(parts)


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio_of(measured: float, reference: float) -> float:
    return measured / reference if reference else float("inf")


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
    except OSError:
        pass
    memory = 0
    try:
        with open("/proc/meminfo") as meminfo:
            memory = int(next(ln.split()[1] for ln in meminfo if ln.startswith("MemTotal:"))) // 1024
    except (OSError, StopIteration):
        pass
    import scheduling.rules.engine  # noqa: F401  # the rules this process runs, compiled or not
    from scheduling.rules import _native

    return {
        "nproc": os.cpu_count(),
        "memory_mib": memory,
        "cpu": model,
        "python": platform.python_version(),
        "rules": "compiled (mypyc)" if _native.active() else "plain Python",
        "loadavg": os.getloadavg(),
    }


def report(
    bench: str, figures: list[Figure], *, scale: dict[str, Any] | None = None, directory: Path | None = None
) -> Path:
    """Print the figures and write them to ``<directory or RESULTS_DIR>/<bench>.json``."""
    for figure in figures:
        print(figure.line(), flush=True)
    target = directory or Path(os.environ.get("BENCH_RESULTS_DIR", str(RESULTS_DIR)))
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{bench}.json"
    payload = {
        "bench": bench,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "scale": scale or {},
        "figures": [asdict(f) for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def markdown_table(paths: Iterable[Path]) -> str:
    """The figures of ``paths`` (result JSON files) as the table docs/benchmarks.md carries."""
    lines = [
        "| benchmark | figure | median | target | met | reference (same run) | ratio | ratio target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        data = json.loads(Path(path).read_text())
        for f in data["figures"]:
            ratio = "—" if f["ratio"] is None else f"{f['ratio']:.2f}"
            ratio_met = "—" if f["ratio_met"] is None else ("yes" if f["ratio_met"] else "**no**")
            reference = f"{f['reference']}: {fmt(f['reference_median'])} {f['unit']}" if f["reference"] else "—"
            lines.append(
                f"| {f['bench']} | {f['name']} ({f['scale']}) | {fmt(f['median'])} {f['unit']} | {f['target']} "
                f"| {'yes' if f['met'] else '**no**'} | {reference} | {ratio} | {f['ratio_target'] or '—'} "
                f"| {ratio_met} |"
            )
    return "\n".join(lines)


def scale_counts() -> dict[str, int]:
    """Row counts of the main tables: the patients counted (~60 ms at a million: the figures'
    labels say how many), the large fact and plan tables estimated from ``pg_class`` (a count of
    37 M outbox rows takes seconds; the planner's estimate was 0.3 % off at a million)."""
    from django.db import connection

    tables = {
        "patients": "patients_patient",
        "doses": "patients_doserecord",
        "labs": "patients_labresult",
        "dental_events": "patients_dentalevent",
        "plan_items": "scheduling_planitem",
        "escalations": "scheduling_escalation",
        "outbox": "notifications_outboxmessage",
    }
    out: dict[str, int] = {}
    with connection.cursor() as cursor:
        for name, table in tables.items():
            estimate = -1
            if name != "patients":
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
                row = cursor.fetchone()
                estimate = int(row[0]) if row else -1
            if estimate < 200_000:  # the patients, a small table, or one never analysed
                cursor.execute(f"SELECT count(*) FROM {table}")  # fixed table names
                estimate = int(cursor.fetchone()[0])
            out[name] = estimate
    return out
