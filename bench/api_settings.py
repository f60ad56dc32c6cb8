"""Settings for the API benchmark only: production settings plus a bench URLconf with a bare view.

The bare Django JSON view (the reference) lives in ``bench.api_urls``, never in the production
URLconf. Throttling is lifted: 32 clients polling as one user is the load being measured.
"""

import os

from backend.settings import *  # noqa: F403
from backend.settings import REST_FRAMEWORK

ROOT_URLCONF = "bench.api_urls"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "1000000/s", "user": "1000000/s", "login": "1000000/s"},
}
# Bytes of rendered plans and booklets each worker keeps by ETag (patients.api, scheduling.api);
# 0 measures every 200 rendered afresh (bench_api.py --kept-bytes 0).
CARNET_API_KEPT_BYTES = int(os.environ.get("BENCH_API_KEPT_BYTES", 32 * 1024 * 1024))  # the default
