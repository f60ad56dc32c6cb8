"""The operator's side of Carnet: settings from the environment, production checks, migrations,
the Celery wiring with real brokers and real worker/beat processes, pinned requirements,
docker-compose.yml and the CI entry point.

Processes are started the way an operator starts them (``manage.py``, ``celery -A backend …``) with
a private ``CARNET_VAR_DIR``, so nothing here touches the developer's ``var/``.
"""

from __future__ import annotations

import json
import os
import re
import shelve
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import dj_database_url
import pytest
import redis
import yaml
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
SERVICE_ENV = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "DJANGO_ENV", "DJANGO_DEBUG", "SECRET_KEY")
STRONG_SECRET = "k9#Qz!v2T$wL7@pXe4&rN8*bM1^cY6%hJ3(uF5)gD0-sA_oE+iR=tW{yU}qZ|xC~nV"


def clean_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    """The caller's environment without Carnet's service variables, plus a private var dir."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV and not k.startswith("CELERY_")}
    env.update(CARNET_VAR_DIR=str(var_dir), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **overrides)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", *args]


@contextmanager
def running(cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start a long-running process, and stop it with SIGTERM (SIGKILL after 20 s) afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- Settings from the environment -------------------------------------------------------------

SETTINGS_PROBE = textwrap.dedent(
    """
    import json, django
    django.setup()
    from django.conf import settings
    from backend.celery import app
    db = settings.DATABASES["default"]
    print(json.dumps({
        "engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST", ""), "port": db.get("PORT", ""),
        "broker": settings.CELERY_BROKER_URL, "app_broker": app.conf.broker_url,
        "transport_options": app.conf.broker_transport_options,
        "debug": settings.DEBUG, "kept_bytes": settings.CARNET_API_KEPT_BYTES,
    }))
    """
)


def read_settings(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "backend.settings"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_defaults_are_sqlite_and_a_serverless_broker(tmp_path: Path) -> None:
    seen = read_settings(clean_env(tmp_path))

    assert seen["engine"] == "django.db.backends.sqlite3"
    assert seen["name"] == str(tmp_path / "carnet.sqlite3")
    assert seen["broker"] == seen["app_broker"] == "filesystem://"
    options = seen["transport_options"]
    assert isinstance(options, dict)
    assert options["data_folder_in"] == options["data_folder_out"] == str(tmp_path / "broker" / "out")
    assert options["processed_folder"] == str(tmp_path / "broker" / "processed")
    assert seen["debug"] is True


def test_database_url_and_broker_url_come_from_the_environment(tmp_path: Path) -> None:
    env = clean_env(
        tmp_path,
        DATABASE_URL="postgres://carnet:secret@db.example.org:6543/carnet_prod",
        CELERY_BROKER_URL="redis://queue.example.org:6380/2",
    )
    seen = read_settings(env)

    assert seen["engine"] == "backend.db"  # Django's PostgreSQL backend, timestamps parsed in C
    assert (seen["name"], seen["host"], seen["port"]) == ("carnet_prod", "db.example.org", 6543)
    assert seen["broker"] == seen["app_broker"] == "redis://queue.example.org:6380/2"
    options = seen["transport_options"]
    assert isinstance(options, dict)
    assert "data_folder_in" not in options
    assert options["visibility_timeout"] == 3600


def test_kept_bodies_are_sized_from_the_environment_and_bad_sizes_are_refused(tmp_path: Path) -> None:
    assert read_settings(clean_env(tmp_path))["kept_bytes"] == 32 * 1024 * 1024
    assert read_settings(clean_env(tmp_path, CARNET_API_KEPT_BYTES="0"))["kept_bytes"] == 0
    for bad in ("-1", "32M"):
        done = subprocess.run(
            [sys.executable, "-c", SETTINGS_PROBE],
            cwd=ROOT,
            env={**clean_env(tmp_path, CARNET_API_KEPT_BYTES=bad), "DJANGO_SETTINGS_MODULE": "backend.settings"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode != 0
        assert "ImproperlyConfigured: CARNET_API_KEPT_BYTES" in done.stderr, done.stderr[-2000:]


# --- Production checks and migrations ------------------------------------------------------------


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return clean_env(
        tmp_path,
        DJANGO_ENV="production",
        SECRET_KEY=STRONG_SECRET,
        ALLOWED_HOSTS="carnet.example.org",
        DATABASE_URL="postgres://carnet:secret@db.invalid:5432/carnet",
        CELERY_BROKER_URL="redis://redis.invalid:6379/0",
        **overrides,
    )


def test_production_settings_pass_check_deploy_with_no_warning(tmp_path: Path) -> None:
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    done = manage("check", env=env)

    assert done.returncode != 0
    assert "SECRET_KEY" in done.stderr


def test_development_settings_would_fail_check_deploy(tmp_path: Path) -> None:
    # The check above is meaningful: the same command flags the development defaults.
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=clean_env(tmp_path))

    assert done.returncode != 0
    assert "security.W" in done.stdout + done.stderr


def test_models_and_migrations_agree(tmp_path: Path) -> None:
    done = manage("makemigrations", "--check", "--dry-run", env=clean_env(tmp_path))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes detected" in done.stdout


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_postgresql_run_really_uses_postgresql() -> None:
    url = os.environ.get("DATABASE_URL", "")
    assert url.startswith(("postgres://", "postgresql://")), f"DATABASE_URL={url!r}"
    expected = dj_database_url.parse(url)

    assert connection.vendor == "postgresql"
    assert (connection.settings_dict["HOST"], connection.settings_dict["PORT"]) == (expected["HOST"], expected["PORT"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        (version,) = cursor.fetchone()
    assert version.startswith("PostgreSQL ")
    # The outbox sweep claims rows with SELECT … FOR UPDATE SKIP LOCKED.
    assert connection.features.has_select_for_update_skip_locked


# --- Celery: the probe task through real brokers and real processes ------------------------------


# Django, the apps and Celery loaded: ~100k objects a collection would otherwise walk.
STARTUP_HEAP = 20_000


def send_ping(env: dict[str, str], cwd: Path, marker: Path, token: str, *extra: str) -> None:
    done = subprocess.run(
        celery("-A", "backend", "call", "backend.tasks.ping", "--args", json.dumps([str(marker), token]), *extra),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.redis
def test_a_task_round_trips_through_redis_and_a_real_worker(tmp_path: Path, redis_url: str) -> None:
    queue = f"carnet-probe-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    marker = tmp_path / "ping.txt"
    env = clean_env(tmp_path, CELERY_BROKER_URL=redis_url)
    broker = redis.Redis.from_url(redis_url)

    send_ping(env, tmp_path, marker, token, "--queue", queue)
    assert broker.llen(queue) == 1, "the message should wait in Redis until a worker takes it"

    worker_log = tmp_path / "worker.log"
    worker = celery(
        *("-A", "backend", "worker", "-I", "backend.tasks", "--pool=solo", "-Q", queue, "-n", f"{queue}@%h"),
        *("--without-gossip", "--without-mingle", "--loglevel=INFO"),
    )
    with running(worker, env=env, cwd=tmp_path, log=worker_log) as proc:
        wait_for(
            lambda: any(line.startswith(token) for line in lines(marker)),
            timeout=180,
            what="the worker to run backend.tasks.ping",
            logs=[worker_log],
        )
        worker_pid = proc.pid

    [(seen, pid, frozen)] = [line.split() for line in lines(marker)]
    assert (seen, int(pid)) == (token, worker_pid)
    # The solo worker froze its startup heap (backend.celery's worker_init, backend.heap).
    assert int(frozen) > STARTUP_HEAP
    assert broker.llen(queue) == 0
    broker.delete(queue)


def test_the_demo_worker_and_beat_run_tasks_through_the_filesystem_broker(tmp_path: Path) -> None:
    """What ``scripts/demo`` runs: a real worker and a real beat, the default filesystem broker."""
    var = tmp_path / "var"
    outbox = var / "broker" / "out"
    outbox.mkdir(parents=True)
    (var / "broker" / "processed").mkdir()
    env = clean_env(var)
    called, beaten = tmp_path / "called.txt", tmp_path / "beat.txt"
    token = uuid.uuid4().hex

    # With no worker running, the message waits on disk in the broker folder.
    send_ping(env, tmp_path, called, token)
    waiting = list(outbox.iterdir())
    assert len(waiting) == 1

    # Beat runs the demo's app and schedule plus one probe entry due every second.
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "carnet_beat_probe.py").write_text(
        textwrap.dedent(
            f"""
            from backend.celery import app

            app.conf.beat_schedule = {{
                **app.conf.beat_schedule,
                "carnet-probe-ping": {{
                    "task": "backend.tasks.ping", "schedule": 1.0, "args": [{str(beaten)!r}, "beat"],
                }},
            }}
            """
        )
    )
    beat_env = {**env, "PYTHONPATH": f"{probe}{os.pathsep}{ROOT}"}
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    worker = celery(
        *("-A", "backend", "worker", "-I", "backend.tasks"),
        *("--concurrency=1", "--loglevel=INFO", "-n", f"probe-{token}@%h"),
    )
    beat = celery("-A", "carnet_beat_probe", "beat", "--loglevel=INFO")
    logs = [worker_log, beat_log]
    with (
        running(worker, env=env, cwd=tmp_path, log=worker_log),
        running(beat, env=beat_env, cwd=tmp_path, log=beat_log),
    ):
        wait_for(
            lambda: any(line.startswith(token) for line in lines(called)),
            timeout=180,
            what="the worker to run the waiting message",
            logs=logs,
        )
        wait_for(lambda: len(lines(beaten)) >= 2, timeout=180, what="beat to send the probe twice", logs=logs)

    assert not waiting[0].exists(), "the worker should have consumed the message file"
    # The prefork pool's child ran it, its startup heap frozen (worker_init before the fork, then
    # worker_process_init in the child: backend.celery, backend.heap).
    [(_, _, frozen)] = [line.split() for line in lines(called) if line.startswith(token)]
    assert int(frozen) > STARTUP_HEAP
    assert all(line.startswith("beat ") for line in lines(beaten))
    # Beat loaded the demo's whole schedule from settings, not only the probe.
    with shelve.open(str(var / "celerybeat-schedule"), flag="r") as schedule:  # noqa: S301 -- our own beat's file
        entries = set(schedule["entries"])
    assert set(settings.CELERY_BEAT_SCHEDULE) | {"carnet-probe-ping"} <= entries


# --- Packaging: requirements, docker-compose.yml, CI entry point ---------------------------------

PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(\[[a-z0-9,_-]+\])?==(?P<version>[^\s;#]+)$")


def test_every_requirement_is_pinned_and_is_what_is_installed() -> None:
    requirements = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(requirements) > 50, "transitive dependencies are pinned too"
    for requirement in requirements:
        pinned = PIN.match(requirement)
        assert pinned, f"not pinned with ==: {requirement}"
        assert metadata.version(pinned["name"]) == pinned["version"], requirement

    names = {re.sub(r"[-_.]+", "-", re.split(r"[\[=]", r)[0]).lower() for r in requirements}
    for needed in ("django", "djangorestframework", "celery", "redis", "icalendar", "pytest-django", "psycopg"):
        assert needed in names


def compose_file() -> dict[str, object]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_docker_compose_declares_the_five_services_with_healthchecks_and_volumes() -> None:
    compose = compose_file()
    services = compose["services"]
    assert isinstance(services, dict)
    assert set(services) == {"web", "worker", "beat", "postgres", "redis"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], f"{name} has no healthcheck"

    volumes = compose["volumes"]
    assert isinstance(volumes, dict)
    assert {"pgdata", "redisdata"} <= set(volumes)
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redisdata:/data" in services["redis"]["volumes"]

    assert "gunicorn backend.wsgi" in services["web"]["command"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "backend", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "backend", "beat"]
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DJANGO_ENV"] == "production"
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert "SECRET_KEY" in env
        assert services[name]["build"] == "."

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert "pip install -r requirements.txt" in dockerfile


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (scripts/test installs one)")
    done = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        cwd=ROOT,
        env={**os.environ, "SECRET_KEY": STRONG_SECRET},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ci_runs_the_readme_test_command() -> None:
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "bash scripts/test"
    assert "bash scripts/test" in (ROOT / "README.md").read_text()
