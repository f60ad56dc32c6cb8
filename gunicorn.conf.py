"""gunicorn settings read from the working directory (``gunicorn backend.wsgi`` in the Dockerfile
and docker-compose.yml; command-line options still win).

Each worker, once it has loaded the application and imported the URLconf (the views, DRF, the
apps' modules: otherwise the first request does), moves its startup heap out of the cyclic
collector's walks (``backend.heap``): a request's allocations then trigger collections that walk
only what the requests made.
"""

from __future__ import annotations

from typing import Any


def post_worker_init(worker: Any) -> None:
    from django.urls import get_resolver

    from backend.heap import freeze_startup_heap

    get_resolver().url_patterns  # noqa: B018 (imports every view module)
    freeze_startup_heap()
