"""Real Celery workers and beat processes against the test database, for the reliability tests.

Each process gets its own session (process group) so ``kill -9`` takes the whole worker, pool
children included, like a crashed machine. The broker is a Redis database private to the pytest
worker (xdist), flushed first, so parallel runs never consume each other's tasks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.db import connection

from .smtp import free_port

ROOT = Path(__file__).resolve().parents[3]


def subprocess_database_url() -> str:
    """The URL of the database pytest-django created (test_…), for the subprocesses."""
    s = connection.settings_dict
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    host = s.get("HOST") or "127.0.0.1"
    return f"postgres://{auth}@{host}:{s.get('PORT') or 5432}/{s['NAME']}"


def private_redis_db(url: str) -> str:
    """``url`` with a database index private to this pytest worker (gw0 → 8, gw1 → 9 …)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = 8 + (int(worker[2:]) if worker[2:].isdigit() else 0) % 8
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{index}", "", ""))


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


class RedisServer:
    """A private redis-server on a loopback port, for the restart test."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class Stack:
    """Workers and beats as subprocesses, all with the same environment."""

    def __init__(self, tmp: Path, broker_url: str, **env: str) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "backend.settings",
            "DATABASE_URL": subprocess_database_url(),
            "CELERY_BROKER_URL": broker_url,
            "CARNET_VAR_DIR": str(tmp / "var"),
            "DB_CONN_MAX_AGE": "60",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backend", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def worker(self, name: str, concurrency: int = 4) -> subprocess.Popen[bytes]:
        return self._spawn(
            name,
            [
                "worker",
                "-l",
                "WARNING",
                "-c",
                str(concurrency),
                "-P",
                "prefork",
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
        )

    def beat(self, name: str) -> subprocess.Popen[bytes]:
        return self._spawn(
            name,
            [
                "beat",
                "-l",
                "WARNING",
                "-s",
                str(self.tmp / f"{name}-schedule"),
                "--pidfile",
                str(self.tmp / f"{name}.pid"),
            ],
        )

    def alive(self) -> bool:
        """True while every process not killed on purpose runs; else fail with their logs."""
        for proc in self.procs:
            if proc.poll() is not None and proc.pid not in self.killed:
                raise RuntimeError(f"a celery process exited with {proc.returncode}:\n{self.logs()}")
        return True

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        """kill -9 the whole process group: the worker and its pool children, mid-task."""
        self.killed.add(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill9(proc)
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))


def wait_until(check: Callable[[], Any], *, timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
