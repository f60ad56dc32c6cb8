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

Server: sync workers, one per core (``--workers 2``). A request is CPU-bound: about 2 ms of
Python in the worker and 1 to 2.5 ms in PostgreSQL (measured from /proc during wrk runs), with a
few sub-millisecond round trips; once both cores are busy, more processes only add context
switches. On the shared machine, -w 3 and -w 4 were within noise of -w 2. ``--threads N`` runs
gthread instead (keep-alive): it raised the endpoints' throughput about 1.4x but the tiny bare
view's about 2.4x, so the ratio fell; keep-alive mostly measures the connection setup it saves.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Figure, database_url, median, report, scale_counts, setup_django

P95_TARGET_MS = 50.0
RATIO_TARGET = 0.5
LUA = """
done = function(summary, latency, requests)
  io.write(string.format("BENCH p95_us=%d p50_us=%d requests=%d errors=%d\\n", latency:percentile(95),
    latency:percentile(50), summary.requests, summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    from patients.models import Patient, Role, User
    from scheduling.models import PlanItem
    from scheduling.services import plan_sync

    first = Patient.objects.filter(Exists(PlanItem.objects.filter(patient=OuterRef("pk")))).order_by("pk")
    ids = list(first.values_list("pk", flat=True)[:1000])
    patient = Patient.objects.filter(pk__in=ids).annotate(n=Count("doses")).order_by("-n", "pk").first()
    if patient is None:
        raise SystemExit("no patient with a plan: load and plan some first (bench/load.py)")
    if patient.user_id is None:
        email = f"bench.patient.{patient.pk}@bench.carnet.localhost"
        user = User.objects.filter(email=email).first() or User.objects.create_user(
            email, None, role=Role.PATIENT, first_name=patient.first_name, last_name=patient.last_name
        )
        patient.user = user
        patient.save(update_fields=["user"])
    with transaction.atomic():
        plan_sync(patient=patient)
    assert patient.user is not None
    return tokens_issue(patient.user)["access"], patient.pk


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

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def wrk(
    url: str, *, seconds: int, connections: int, token: str | None, headers: dict[str, str] | None = None
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url]
    for name, value in {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}.items():
        command[1:1] = ["-H", f"{name}: {value}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    stats = dict(re.findall(r"(\w+)=(\d+)", output.split("BENCH", 1)[1]))
    return {
        "rps": rate,
        "p95_ms": int(stats["p95_us"]) / 1000,
        "p50_ms": int(stats["p50_us"]) / 1000,
        "errors": int(stats["errors"]),
        "requests": int(stats["requests"]),
    }


def run(
    *,
    seconds: int,
    runs: int,
    connections: int = 32,
    workers: int = 2,
    threads: int = 1,
    kept_bytes: int | None = None,
    command: str = "",
) -> list[Figure]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    token, patient_id = patient_token()
    paths = {"plan": "/api/v1/me/plan", "booklet": "/api/v1/me/booklet", "bare": "/bench/bare"}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in [*paths, "plan_304", "booklet_304"]}
    with Gunicorn(workers=workers, threads=threads, kept_bytes=kept_bytes) as server:
        base = f"http://127.0.0.1:{server.port}"
        etags, sizes = {}, {}
        for name in ("plan", "booklet"):  # what a client holds: the body and its ETag
            request = urllib.request.Request(base + paths[name], headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=30) as response:
                sizes[name] = len(response.read())
                etags[name] = response.headers["ETag"]
        for path in paths.values():  # warm every worker
            wrk(base + path, seconds=1, connections=connections, token=token)
        for _ in range(runs):
            for name, path in paths.items():
                results[name].append(wrk(base + path, seconds=seconds, connections=connections, token=token))
            for name in ("plan", "booklet"):  # the app polling with If-None-Match: 304, no body
                results[f"{name}_304"].append(
                    wrk(
                        base + paths[name],
                        seconds=seconds,
                        connections=connections,
                        token=token,
                        headers={"If-None-Match": etags[name]},
                    )
                )
    bare_rps = median(r["rps"] for r in results["bare"])
    counts = scale_counts()
    config = f"gunicorn -w {workers}" + (f" --threads {threads} (gthread)" if threads > 1 else " (sync)")
    if kept_bytes == 0:
        config += ", no body kept (every 200 rendered)"
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
                notes=f"{errors} requests timed out or failed" if errors else "",
                extra={
                    "rps": rps,
                    "bare_rps": bare_rps,
                    "errors": errors,
                    "patient": patient_id,
                    "bytes": sizes[endpoint] if not name.endswith("_304") else 0,
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
    args = parser.parse_args(argv)
    setup_django()
    # Bodies kept or not are two configurations: two result files, so bench/run reports both.
    report(
        "api_cold" if args.kept_bytes == 0 else "api",
        run(
            seconds=args.seconds,
            runs=args.runs,
            workers=args.workers,
            threads=args.threads,
            kept_bytes=args.kept_bytes,
            command=f"python bench/bench_api.py --seconds {args.seconds} --runs {args.runs}"
            f" --workers {args.workers} --threads {args.threads}"
            + (f" --kept-bytes {args.kept_bytes}" if args.kept_bytes is not None else ""),
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
