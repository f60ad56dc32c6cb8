"""Shared pytest wiring for the services the suite may run against. Keep it small.

Markers:
- ``postgres``: needs the database to be PostgreSQL (``DATABASE_URL=postgres://…``); skipped on SQLite.
- ``redis``: needs a Redis server at ``REDIS_URL``; skipped without it.

``bash scripts/test`` sets ``CARNET_REQUIRE_SERVICES=1`` on its PostgreSQL run: there a test with
either marker is never skipped, so a run that silently fell back to SQLite fails instead of passing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: needs a Redis server at REDIS_URL (skipped without it)")


def database_is_postgresql() -> bool:
    return settings.DATABASES["default"]["ENGINE"] in ("backend.db", "django.db.backends.postgresql")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CARNET_REQUIRE_SERVICES") == "1":
        return
    skip_postgres = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://…")
    skip_redis = pytest.mark.skip(reason="needs Redis: set REDIS_URL=redis://…")
    on_postgresql = database_is_postgresql()
    has_redis = bool(os.environ.get("REDIS_URL"))
    for item in items:
        if "postgres" in item.keywords and not on_postgresql:
            item.add_marker(skip_postgres)
        if "redis" in item.keywords and not has_redis:
            item.add_marker(skip_redis)


@pytest.fixture
def redis_url() -> str:
    """The Redis server started by ``bash scripts/test`` (use with ``@pytest.mark.redis``)."""
    url = os.environ.get("REDIS_URL", "")
    assert url.startswith("redis://"), "REDIS_URL is not set: run through `bash scripts/test`"
    return url


@pytest.fixture
def task_queue(redis_url: str) -> Iterator[tuple[Any, Any]]:
    """A producer on the test Redis and Celery's default queue, emptied before and after: what a
    task publishes, read back as the workers would (``queue.get``)."""
    from backend.celery import app

    with app.connection_for_write(redis_url) as connection:
        queue = app.amqp.queues[app.conf.task_default_queue](connection.default_channel)
        queue.declare()
        queue.purge()
        yield app.amqp.Producer(connection, auto_declare=False), queue
        queue.purge()


@pytest.fixture(autouse=True)
def _english_outside_requests() -> Iterator[None]:
    """Model and service messages are asserted in English; requests still negotiate (fr default)."""
    from django.utils import translation

    with translation.override("en"):
        yield
