"""``backend.heap``: the collector paused around a batch of re-planning, the startup heap frozen
in the processes that serve (the Celery worker: tests/test_setup.py's real workers; gunicorn)."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.heap import collection_paused, freeze_startup_heap
from scheduling import services
from tests.factories import PatientFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the test process its heap back as it was (a test must not leave objects frozen)."""
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()


def test_the_collector_is_off_inside_and_back_after() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_comes_back_when_the_block_raises() -> None:
    with pytest.raises(ZeroDivisionError), collection_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()


def test_a_block_entered_with_the_collector_off_leaves_it_off() -> None:
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_nested_and_concurrent_blocks_never_leave_the_collector_off() -> None:
    inner_entered, outer_left = threading.Event(), threading.Event()

    def other_thread() -> None:
        with collection_paused():
            inner_entered.set()
            outer_left.wait(5)

    thread = threading.Thread(target=other_thread)
    with collection_paused():
        thread.start()
        inner_entered.wait(5)
    # This block entered first and left first: it turns the collector back on even though the
    # other thread's block (entered with the collector off) is still running.
    assert gc.isenabled()
    outer_left.set()
    thread.join(5)
    assert gc.isenabled()


@pytest.mark.django_db
def test_a_re_plan_runs_with_the_collector_paused_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    compute = services.engine.compute_plan

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(gc.isenabled())
        return compute(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(services.engine, "compute_plan", spy)
    services.plans_sync_batch([PatientFactory(), PatientFactory()])

    assert seen == [False, False]
    assert gc.isenabled()


def test_freezing_moves_every_live_object_out_of_the_collections(unfrozen: None) -> None:
    gc.collect()
    alive = len(gc.get_objects())

    freeze_startup_heap()

    assert gc.get_freeze_count() >= alive * 0.95
    assert len(gc.get_objects()) < alive * 0.01


def test_gunicorn_reads_the_hook_from_the_working_directory() -> None:
    """``gunicorn backend.wsgi`` (Dockerfile, docker-compose.yml) runs from the repository root,
    where gunicorn finds ``gunicorn.conf.py`` without an option."""
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "backend.wsgi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = {
        name.strip(): value.strip()
        for name, _, value in (line.partition("=") for line in done.stdout.splitlines())
        if value
    }
    assert config["config"] == "./gunicorn.conf.py"
    assert config["post_worker_init"] == "<post_worker_init()>"


def test_the_gunicorn_hook_imports_the_views_then_freezes(unfrozen: None) -> None:
    namespace: dict[str, object] = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), namespace)  # noqa: S102 -- our own config file

    namespace["post_worker_init"](None)  # type: ignore[operator]

    assert "scheduling.api" in sys.modules
    assert gc.get_freeze_count() > 20_000
