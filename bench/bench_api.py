#!/usr/bin/env python
"""API under load: a patient's upcoming plan and booklet, 32 concurrent clients (wrk) against gunicorn.

    python bench/bench_api.py --seconds 10 --runs 3

gunicorn serves the production routes with ``bench.api_settings`` (the production settings plus a
bench-only URLconf that adds ``/bench/bare``, a bare Django JSON view: the reference). wrk runs
32 connections for ``--seconds`` per run against ``GET /api/v1/me/plan`` and
``GET /api/v1/me/booklet`` (JWT of a patient with a ten-year history: the most doses among the
first 1,000 planned patients) and against the bare view; then both endpoints again with the
``If-None-Match`` a polling app sends (304, no body). Targets: p95 < 50 ms; throughput ratio
(endpoint / bare view) ≥ 0.5. The p95 comes from wrk's latency histogram (Lua ``done`` hook).

Each worker keeps the plans and booklets it rendered by ETag (``CARNET_API_KEPT_BYTES``), so the
200s here, 32 clients asking for one patient's plan, are mostly bodies already rendered: a
repeated GET. ``--kept-bytes 0`` keeps none, so that every 200 is rendered afresh (a patient
whose body no worker holds yet).

``--patients N`` spreads the load over N patients (the first N with a plan, each with a token of
their own, rotated request by request by the wrk script, the bare view included): the kept bodies
then serve only what a worker rendered for that patient before, as with many patients polling.
Its figures go to ``api_many.json``.

Each run also records the CPU time per request of the gunicorn workers, of the PostgreSQL
backends serving them (``/proc``) and of wrk: a figure that other load on the machine disturbs
much less than the throughput does, for A/B comparisons.

Server: sync workers, one per core (``--workers 2``). A request is CPU-bound: about 2 ms of
Python in the worker and 1 to 2.5 ms in PostgreSQL (measured from /proc during wrk runs), with a
few sub-millisecond round trips; once both cores are busy, more processes only add context
switches. On the shared machine, -w 3 and -w 4 were within noise of -w 2. ``--threads N`` runs
gthread instead (keep-alive): it raised the endpoints' throughput about 1.4x but the tiny bare
view's about 2.4x, so the ratio fell; keep-alive mostly measures the connection setup it saves.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Figure, database_url, median, report, scale_counts, setup_django

P95_TARGET_MS = 50.0
CPU_KEYS = ("worker_cpu_ms", "postgres_cpu_ms", "wrk_cpu_ms")
RATIO_TARGET = 0.5
LUA = """
done = function(summary, latency, requests)
  io.write(string.format("BENCH p95_us=%d p50_us=%d requests=%d errors=%d\\n", latency:percentile(95),
    latency:percentile(50), summary.requests, summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


# Many patients: each request the next patient's token (and ETag, for the 304 runs). wrk builds
# the requests in Lua then, so the bare view gets the same script and its client-side cost.
LUA_ROTATE = """
local counter = 0
request = function()
  counter = counter + 1
  local i = (counter % #tokens) + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[i]}
  if etags ~= nil then headers["If-None-Match"] = etags[i] end
  return wrk.format("GET", nil, headers)
end
"""


def lua_list(name: str, values: list[str] | None) -> str:
    if values is None:
        return f"{name} = nil\n"
    return f"{name} = {{{', '.join(json.dumps(v) for v in values)}}}\n"  # JSON strings are Lua strings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _login(patient: Any) -> None:
    """Link a patient login to ``patient`` if it has none (the bench's own address)."""
    from patients.models import Role, User

    if patient.user_id is None:
        email = f"bench.patient.{patient.pk}@bench.carnet.localhost"
        user = User.objects.filter(email=email).first() or User.objects.create_user(
            email, None, role=Role.PATIENT, first_name=patient.first_name, last_name=patient.last_name
        )
        patient.user = user
        patient.save(update_fields=["user"])


def patient_token() -> tuple[str, int]:
    """A JWT access token for a patient with a long history and a current stored plan.

    The patient with the most doses among the first 1,000 with a plan (at the bench scales, a
    denosumab patient of about ten years: ~130 monthly doses). A login is linked if needed, and
    the patient is re-planned once (``plan_sync``, as any fact change or the nightly pass would)
    so that their plan state exists even in a database loaded before it did.
    """
    from django.db import transaction
    from django.db.models import Count, Exists, OuterRef

    from backend.auth import tokens_issue
    from patients.models import Patient
    from scheduling.models import PlanItem
    from scheduling.services import plan_sync

    first = Patient.objects.filter(Exists(PlanItem.objects.filter(patient=OuterRef("pk")))).order_by("pk")
    ids = list(first.values_list("pk", flat=True)[:1000])
    patient = Patient.objects.filter(pk__in=ids).annotate(n=Count("doses")).order_by("-n", "pk").first()
    if patient is None:
        raise SystemExit("no patient with a plan: load and plan some first (bench/load.py)")
    _login(patient)
    with transaction.atomic():
        plan_sync(patient=patient)
    assert patient.user is not None
    return tokens_issue(patient.user)["access"], patient.pk


def patient_tokens(count: int) -> tuple[list[str], list[int]]:
    """Access tokens of the first ``count`` patients with a plan (a login linked where missing;
    re-planned once where their plan state is missing, as ``patient_token`` does)."""
    from django.db import transaction
    from django.db.models import Exists, OuterRef

    from backend.auth import tokens_issue
    from patients.models import Patient
    from scheduling.models import PlanItem, PlanState
    from scheduling.services import plan_sync

    patients = list(
        Patient.objects.filter(Exists(PlanItem.objects.filter(patient=OuterRef("pk")))).order_by("pk")[:count]
    )
    stated = set(PlanState.objects.filter(patient__in=patients).values_list("patient_id", flat=True))
    tokens = []
    for patient in patients:
        _login(patient)
        if patient.pk not in stated:
            with transaction.atomic():
                plan_sync(patient=patient)
        assert patient.user is not None
        tokens.append(tokens_issue(patient.user)["access"])
    return tokens, [patient.pk for patient in patients]


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU of each of these processes still running (threads included), from /proc."""
    seconds = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def _cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two readings: a process that appeared counts from zero; one that ended
    meanwhile (a database connection past its age) is left out, so this can only undercount."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def _backend_pids() -> list[int]:
    """The PostgreSQL backends connected to the bench database, this process's own left out."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        return [int(pid) for (pid,) in cursor.fetchall()]


class Gunicorn:
    def __init__(self, *, workers: int, threads: int = 1, kept_bytes: int | None = None) -> None:
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.kept_bytes = kept_bytes
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.api_settings",
            "DATABASE_URL": database_url(),
            "CARNET_VAR_DIR": os.environ.get("BENCH_VAR_DIR", "/tmp/carnet-bench-var"),
            "JWT_ACCESS_MINUTES": "120",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **({"BENCH_API_KEPT_BYTES": str(self.kept_bytes)} if self.kept_bytes is not None else {}),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "backend.wsgi:application",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(self.workers),
                *(["--worker-class", "gthread", "--threads", str(self.threads)] if self.threads > 1 else []),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/bench/bare", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("gunicorn did not start")

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        pid = self.process.pid
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    token: str | None,
    headers: dict[str, str] | None = None,
    rotate: tuple[list[str], list[str] | None] | None = None,
    server: Gunicorn | None = None,
) -> dict[str, float]:
    """One wrk run; ``rotate``: (tokens, ETags or None) sent in turn instead of ``token``/``headers``.

    With ``server``, the CPU per request of its workers, of the PostgreSQL backends and of wrk.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if rotate is not None:
            script.write(lua_list("tokens", rotate[0]) + lua_list("etags", rotate[1]) + LUA_ROTATE)
        script.write(LUA)
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url]
    if rotate is None:
        for name, value in {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}.items():
            command[1:1] = ["-H", f"{name}: {value}"]
    workers = server.worker_pids() if server is not None else []
    before = (_cpu_seconds(workers), _cpu_seconds(_backend_pids() if server is not None else []))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = (_cpu_seconds(workers), _cpu_seconds(_backend_pids() if server is not None else []))
    os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    stats = dict(re.findall(r"(\w+)=(\d+)", output.split("BENCH", 1)[1]))
    requests = max(1, int(stats["requests"]))
    wrk_cpu = (after_children.ru_utime + after_children.ru_stime) - (children.ru_utime + children.ru_stime)
    return {
        "rps": rate,
        "p95_ms": int(stats["p95_us"]) / 1000,
        "p50_ms": int(stats["p50_us"]) / 1000,
        "errors": int(stats["errors"]),
        "requests": int(stats["requests"]),
        "worker_cpu_ms": 1000 * _cpu_spent(before[0], after[0]) / requests,
        "postgres_cpu_ms": 1000 * _cpu_spent(before[1], after[1]) / requests,
        "wrk_cpu_ms": 1000 * wrk_cpu / requests,
    }


def run(
    *,
    seconds: int,
    runs: int,
    connections: int = 32,
    workers: int = 2,
    threads: int = 1,
    kept_bytes: int | None = None,
    patients: int = 1,
    command: str = "",
) -> list[Figure]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    if patients > 1:
        tokens, patient_ids = patient_tokens(patients)
        token, patient_id = tokens[0], patient_ids[0]
    else:
        token, patient_id = patient_token()
        tokens = [token]
    paths = {"plan": "/api/v1/me/plan", "booklet": "/api/v1/me/booklet", "bare": "/bench/bare"}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in [*paths, "plan_304", "booklet_304"]}
    with Gunicorn(workers=workers, threads=threads, kept_bytes=kept_bytes) as server:
        base = f"http://127.0.0.1:{server.port}"
        etags: dict[str, list[str]] = {"plan": [], "booklet": []}
        sizes: dict[str, list[int]] = {"plan": [], "booklet": []}
        for name in ("plan", "booklet"):  # what each client holds: the body and its ETag
            for each in tokens:
                request = urllib.request.Request(base + paths[name], headers={"Authorization": f"Bearer {each}"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    sizes[name].append(len(response.read()))
                    etags[name].append(response.headers["ETag"])

        def load(name: str, *, seconds: int, polled: bool = False) -> dict[str, float]:
            url = base + paths[name]
            if patients > 1:
                rotate = (tokens, etags[name] if polled else None)
                return wrk(url, seconds=seconds, connections=connections, token=None, rotate=rotate, server=server)
            headers = {"If-None-Match": etags[name][0]} if polled else None
            return wrk(url, seconds=seconds, connections=connections, token=token, headers=headers, server=server)

        for name in paths:  # warm every worker
            load(name, seconds=1)
        for _ in range(runs):
            for name in paths:
                results[name].append(load(name, seconds=seconds))
            for name in ("plan", "booklet"):  # the app polling with If-None-Match: 304, no body
                results[f"{name}_304"].append(load(name, seconds=seconds, polled=True))
    bare_rps = median(r["rps"] for r in results["bare"])
    counts = scale_counts()
    config = f"gunicorn -w {workers}" + (f" --threads {threads} (gthread)" if threads > 1 else " (sync)")
    if kept_bytes == 0:
        config += ", no body kept (every 200 rendered)"
    if patients > 1:
        config += f", {patients:,} patients' tokens in turn"
    scale = f"{connections} clients, {config}, {counts['patients']:,} patients"
    figures = []
    for name in ("plan", "booklet", "plan_304", "booklet_304"):
        endpoint = name.removesuffix("_304")
        label = f"GET /api/v1/me/{endpoint} p95" + (", If-None-Match (304)" if name.endswith("_304") else "")
        rps = median(r["rps"] for r in results[name])
        p95 = median(r["p95_ms"] for r in results[name])
        errors = sum(int(r["errors"]) for r in results[name])
        ratio = rps / bare_rps
        figures.append(
            Figure(
                bench="api",
                name=label,
                unit="ms",
                median=p95,
                # wrk leaves timed-out requests out of its latencies: any error means the target is not met.
                target=f"< {P95_TARGET_MS:.0f} ms, no error",
                met=p95 < P95_TARGET_MS and errors == 0,
                runs=runs,
                reference="bare Django JSON view, p95",
                reference_median=median(r["p95_ms"] for r in results["bare"]),
                ratio=ratio,
                ratio_target=f"≥ {RATIO_TARGET} (throughput)",
                ratio_met=ratio >= RATIO_TARGET,
                scale=scale,
                command=command,
                notes="; ".join(
                    [
                        *([f"{errors} requests timed out or failed"] if errors else []),
                        "CPU per request (ms): worker {:.2f}, PostgreSQL {:.2f}, wrk {:.2f};"
                        " bare view {:.2f}, {:.2f}, {:.2f}".format(
                            *(median(r[key] for r in results[name]) for key in CPU_KEYS),
                            *(median(r[key] for r in results["bare"]) for key in CPU_KEYS),
                        ),
                    ]
                ),
                extra={
                    "rps": rps,
                    "bare_rps": bare_rps,
                    "errors": errors,
                    "patient": patient_id,
                    "bytes": median(sizes[endpoint]) if not name.endswith("_304") else 0,
                    "patients": patients,
                    **{key: median(r[key] for r in results[name]) for key in CPU_KEYS},
                    **{f"bare_{key}": median(r[key] for r in results["bare"]) for key in CPU_KEYS},
                    "runs": results[name],
                    "bare_runs": results["bare"],
                },
            )
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default: one per core)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (> 1: the gthread worker)")
    parser.add_argument(
        "--kept-bytes", type=int, default=None, help="bytes of rendered bodies each worker keeps (0: none)"
    )
    parser.add_argument(
        "--patients", type=int, default=1, help="patients whose tokens the clients send in turn (default: one)"
    )
    args = parser.parse_args(argv)
    setup_django()
    # Bodies kept or not, one patient or many: each configuration its own result file (bench/run).
    name = "api_cold" if args.kept_bytes == 0 else "api"
    figures = run(
        seconds=args.seconds,
        runs=args.runs,
        workers=args.workers,
        threads=args.threads,
        kept_bytes=args.kept_bytes,
        patients=args.patients,
        command=f"python bench/bench_api.py --seconds {args.seconds} --runs {args.runs}"
        f" --workers {args.workers} --threads {args.threads}"
        + (f" --kept-bytes {args.kept_bytes}" if args.kept_bytes is not None else "")
        + (f" --patients {args.patients}" if args.patients > 1 else ""),
    )
    report(f"{name}_many" if args.patients > 1 else name, figures)
    for figure in figures:
        rates = f"{figure.extra['rps']:,.0f} req/s (bare view {figure.extra['bare_rps']:,.0f})"
        print(f"api/{figure.name}: {rates}; {figure.notes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
