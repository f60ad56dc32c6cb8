"""A real worker rides through Redis going away while it runs tasks (kombu issue #582,
``backend.broker``).

The failing case, made certain: two tasks are running and the worker still has credit, so its
BRPOP is waiting on Redis; Redis is killed. The remote-control reader notices first, the consumer
collects the connection (closing the task channel stops at the failed BRPOP read), then closes
it: the task channel's close tries to put the two running tasks back, on a connection whose
parameters are gone. With kombu's transport that was an AttributeError and the worker exited
(``Unrecoverable error``); with ours it is a connection error and the worker reconnects.
tests/e2e/test_delivery_reliability.py's Redis restart (c) meets the same case now and then,
when Redis dies while the pool is neither idle nor full.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers.stack import ROOT, RedisServer, wait_until

pytestmark = [pytest.mark.e2e]

SERVICE_ENV = ("DATABASE_URL", "REDIS_URL")
WORKER = ["-I", "tests.e2e.servers.slow_task", "-l", "WARNING", "-c", "3", "-P", "prefork", "-n", "restart@%h"]
QUIET = ["--without-gossip", "--without-mingle", "--without-heartbeat"]  # as tests/e2e/servers/stack.py


def send(broker_url: str, marker: Path, token: str, seconds: float) -> None:
    from backend.celery import app

    with app.connection_for_write(broker_url) as connection, connection.Producer() as producer:
        app.send_task("tests.e2e.slow", args=[str(marker), token, seconds], producer=producer)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
def worker(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """One prefork worker (3 processes, remote control on, as in production) on the private Redis."""
    # SQLite in the private var dir: the task touches no database.
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV and not k.startswith("CELERY_")}
    env.update(
        DJANGO_SETTINGS_MODULE="backend.settings",
        CELERY_BROKER_URL=redis_server.url,
        CARNET_VAR_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backend", "worker", *WORKER, *QUIET],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield proc, log
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_the_worker_rides_through_redis_dying_with_tasks_running(
    redis_server: RedisServer, worker: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    proc, log = worker
    marker = tmp_path / "marker"
    send(redis_server.url, marker, "a", 2.5)
    send(redis_server.url, marker, "b", 2.5)
    assert wait_until(lambda: {"start a", "start b"} <= set(lines(marker)), timeout=60), log.read_text()

    redis_server.kill()
    time.sleep(1.5)
    redis_server.start()

    # The worker reconnects (it retries every 2 s at first) and takes new work.
    send(redis_server.url, marker, "after", 0)
    assert wait_until(lambda: "done after" in lines(marker) or proc.poll() is not None, timeout=60)
    output = log.read_text(errors="replace")
    assert proc.poll() is None, f"the worker exited with {proc.returncode}:\n{output[-4000:]}"
    assert "done after" in lines(marker)
    assert "Unrecoverable error" not in output
    # The two tasks that were running ran to their end.
    assert wait_until(lambda: {"done a", "done b"} <= set(lines(marker)), timeout=30), lines(marker)
