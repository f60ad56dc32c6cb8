"""Python's cyclic garbage collector, set for a long-running service process.

Carnet's hot paths (the rules, the plan diff, the outbox, a request) allocate many short-lived
objects and make few reference cycles or none: reference counting frees them, and the collections
the allocation count triggers find little or nothing (a re-planning pass: nothing, counted with
``gc.callbacks``). Two settings keep those collections cheap:

- ``freeze_startup_heap``: once a process has loaded Django, the apps and their modules (~100k
  objects that live as long as the process), move them to the permanent generation so a full
  collection no longer walks them. Called by the Celery worker (``backend.celery``), by each
  gunicorn worker (``gunicorn.conf.py``) and by the benchmarks, which measure a worker's path.
  Frozen in the Celery parent before its pool forks, the objects also keep their pages shared
  with the children (a collection writes to every object it walks).
- ``collection_paused``: no collection while an allocation-heavy step that makes no cycles runs
  (a re-planning batch); the collector runs again as soon as it ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collection_paused", "freeze_startup_heap"]


def freeze_startup_heap() -> None:
    """Collect once, then exempt every object alive now from later collections (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic collection inside the block; the collector's state is restored after it.

    Process-wide (the collector is): another thread's allocations are not collected meanwhile
    either, for as long as the block runs (a re-planning batch of 500 patients: about half a
    second). A block entered while the collector is already off leaves it off.
    """
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
