"""Carnet settings, read from the environment (12-factor).

Defaults give the embedded demo: SQLite and a Celery broker that needs no server (kombu's
filesystem transport). Production sets ``DJANGO_ENV=production`` plus ``SECRET_KEY``,
``DATABASE_URL`` and ``CELERY_BROKER_URL``; it then passes ``manage.py check --deploy``.
"""

from __future__ import annotations

import json
import ssl
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from backend.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CARNET_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DJANGO_ENV = env_str("DJANGO_ENV", "development")
PRODUCTION = DJANGO_ENV == "production"
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)

_DEV_SECRET = "carnet-development-only-secret-key-not-for-production-use-0123456789"  # noqa: S105  # dev default, refused in production
SECRET_KEY = env_str("SECRET_KEY", "" if PRODUCTION else _DEV_SECRET)
if PRODUCTION and (not SECRET_KEY or SECRET_KEY == _DEV_SECRET):
    raise ImproperlyConfigured("SECRET_KEY: set a long random value in production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "simple_history",
    "patients",
    "scheduling",
    "notifications",
    "idempotency",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before the polled reads' answer (a response-only middleware: its place changes nothing else).
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    # GET /api/v1/me/plan and /me/booklet with a bearer token, answered here (backend/polled.py).
    "backend.polled.PolledMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, so it turns a django-axes lockout into a response (failed-login throttling).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "backend.urls"
WSGI_APPLICATION = "backend.wsgi.application"
ASGI_APPLICATION = "backend.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# Database: SQLite by default, PostgreSQL in production and in the integration tests.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'carnet.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with psycopg's C timestamp parser (backend/db/base.py).
    DATABASES["default"]["ENGINE"] = "backend.db"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process, the worker and beat share the demo database.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # The covering indexes' INCLUDE columns (index-only scans of the escalation pass and the
    # sweep) are a PostgreSQL feature: SQLite builds the same indexes on their keys alone, which is
    # all the demo needs, so its check warning on every command says nothing to act on.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "patients.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# django-axes first: it refuses a locked-out login before the password is checked.
AUTHENTICATION_BACKENDS = ["backend.auth.AxesBackend", "django.contrib.auth.backends.ModelBackend"]

LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", "Français"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "Europe/Paris"
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing root
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

REST_FRAMEWORK = {
    # JWT for the mobile app; the session (with CSRF) for staff pages in a browser.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "backend.auth.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # DRF's anon and user throttles, their history stored packed (one copy of bytes per request,
    # not a pickled list as long as the requests in the window): backend/throttling.py.
    "DEFAULT_THROTTLE_CLASSES": [
        "backend.throttling.AnonRateThrottle",
        "backend.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "120/min"),
        "user": env_str("API_THROTTLE_USER", "1200/min"),
        "login": env_str("API_THROTTLE_LOGIN", "20/min"),
    },
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "backend.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Carnet API",
    "DESCRIPTION": "Anti-resorptive treatment follow-up: booklet, plan, reminders.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Request and response bodies as separate components: read-only fields stay out of requests.
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc served from the app (drf-spectacular-sidecar): no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "PlanItemStatusEnum": "scheduling.models.ItemStatus",
        "PlanItemKindEnum": "scheduling.models.ItemKind",
        "AppointmentStatusEnum": "scheduling.models.Appointment.Status",
        "CareTeamKindEnum": "patients.models.CareTeam.Kind",
    },
}

# Tokens for the mobile app: a short-lived access token and a rotating refresh token that is
# blacklisted when used, on logout, and on "sign out everywhere" (backend/auth.py).
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 10)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 30)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "AUTH_HEADER_TYPES": ("Bearer",),
    # Tokens name the user by UUID, never by a sequential id.
    "USER_ID_FIELD": "public_id",
    "USER_ID_CLAIM": "sub",
}

# Failed logins (token, session, admin): locked per email and IP after AXES_FAILURE_LIMIT failures.
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_VERBOSE = False  # no banner on stderr: `manage.py plan` prints JSON errors there
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "backend.auth.axes_username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "backend.auth.axes_lockout_response"
# Idempotency-Key records are kept this long, then purged (idempotency.services).
IDEMPOTENCY_KEY_TTL_HOURS = env_int("IDEMPOTENCY_KEY_TTL_HOURS", 24)

# Clinical policy (clinical-rules.md section 3). Every value has the table's default in
# scheduling/rules/config.py; a deployment overrides any of them with a JSON object in
# CARNET_RULES, e.g. CARNET_RULES='{"onco_monthly_interval": "1m", "oral_consolidation_months": 18}'.
# Unknown keys and bad values stop the start with the key named (RulesConfig.from_mapping).
try:
    CARNET_RULES: dict[str, object] = json.loads(env_str("CARNET_RULES", "{}"))
except json.JSONDecodeError as _exc:
    raise ImproperlyConfigured(f"CARNET_RULES: not valid JSON ({_exc.msg})") from _exc
if not isinstance(CARNET_RULES, dict):
    raise ImproperlyConfigured("CARNET_RULES: expected a JSON object")

# Celery: filesystem broker by default (no server), Redis in production.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # A message not acknowledged within the visibility timeout goes back to the queue.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # kombu's Redis transport, except that a channel of a closed connection fails as a lost
    # connection, which the worker rides through, not as an AttributeError that stops it (kombu
    # issue #582; backend.broker). The URL's scheme no longer picks the transport, so TLS for
    # rediss:// is asked for here, with the server's certificate verified (kombu's own default
    # there is not to verify it); ssl_* parameters in the URL still take precedence.
    CELERY_BROKER_TRANSPORT = "backend.broker:Transport"
    if CELERY_BROKER_URL.startswith("rediss://"):
        CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 1000)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The nightly pass hands its patients to the workers in chunks of this many (scheduling.tasks).
PLAN_REFRESH_CHUNK = env_int("PLAN_REFRESH_CHUNK", 2000)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "plan-nightly-status-refresh": {
        "task": "scheduling.tasks.plan_refresh_statuses",
        # 00:05 Europe/Paris in winter, 01:05 in summer: both after local midnight.
        "schedule": crontab(minute=5, hour=23),
    },
    # The outbox sweep: claims due reminders and sends them (notifications.delivery).
    "notifications-outbox-sweep": {
        "task": "notifications.tasks.outbox_sweep",
        "schedule": timedelta(seconds=env_int("NOTIFY_SWEEP_INTERVAL_SECONDS", 60)),
        "options": {"expires": 55},
    },
    # Idempotency keys live IDEMPOTENCY_KEY_TTL_HOURS; forget older ones daily.
    "idempotency-purge": {
        "task": "idempotency.tasks.idempotency_purge",
        "schedule": crontab(minute=15, hour=3),
    },
}

# Cache: rate-limit counters (iCal feeds). Per-process memory by default; set CACHE_URL
# (redis://…) so every web process shares the counts.
CACHE_URL = env_str("CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "carnet"}
}
# iCal feeds: requests per period, per client IP and per token; proxies in front of the app whose
# X-Forwarded-For is trusted; how far back done items stay in a feed.
CARNET_ICAL_RATE_LIMIT = env_int("CARNET_ICAL_RATE_LIMIT", 60)
CARNET_ICAL_RATE_PERIOD = env_int("CARNET_ICAL_RATE_PERIOD", 60)
CARNET_TRUSTED_PROXIES = env_int("CARNET_TRUSTED_PROXIES", 0)
CARNET_ICAL_HISTORY_DAYS = env_int("CARNET_ICAL_HISTORY_DAYS", 730)

# Bytes of rendered plans, and as many of booklets, each web process keeps by ETag
# (scheduling.api.PLANS, patients.api.BOOKLETS; 0 keeps none). 32 MiB each: the booklets of the
# first 1,000 patients of the benchmark's million weigh 17.6 MiB, and a least-recently-used cache
# read in turn by a set a little larger than itself misses nearly every time (16 MiB: the
# booklet's PostgreSQL 0.15 ms a request, 32 MiB: 0.09; docs/benchmarks.md, API, session 14).
CARNET_API_KEPT_BYTES = env_int("CARNET_API_KEPT_BYTES", 32 * 1024 * 1024, minimum=0)

# Email: Django's SMTP backend; the demo prints to the console unless EMAIL_HOST is set.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Carnet <no-reply@carnet.localhost>")

# Push credentials (see README).
WEBPUSH_VAPID_PRIVATE_KEY = env_str("WEBPUSH_VAPID_PRIVATE_KEY", "")
WEBPUSH_VAPID_PUBLIC_KEY = env_str("WEBPUSH_VAPID_PUBLIC_KEY", "")
WEBPUSH_VAPID_SUBJECT = env_str("WEBPUSH_VAPID_SUBJECT", "mailto:ops@carnet.localhost")
FCM_ENDPOINT = env_str("FCM_ENDPOINT", "https://fcm.googleapis.com/v1/projects/{project}/messages:send")
FCM_PROJECT_ID = env_str("FCM_PROJECT_ID", "")
FCM_CREDENTIALS_FILE = env_str("FCM_CREDENTIALS_FILE", "")
APNS_ENDPOINT = env_str("APNS_ENDPOINT", "https://api.push.apple.com")
APNS_KEY_FILE = env_str("APNS_KEY_FILE", "")
APNS_KEY_ID = env_str("APNS_KEY_ID", "")
APNS_TEAM_ID = env_str("APNS_TEAM_ID", "")
APNS_TOPIC = env_str("APNS_TOPIC", "")

# Delivery of reminders (notifications): batch, lease, retries, digest, health thresholds.
NOTIFY_BATCH_SIZE = env_int("NOTIFY_BATCH_SIZE", 100)
NOTIFY_LEASE_SECONDS = env_int("NOTIFY_LEASE_SECONDS", 300)
NOTIFY_SWEEP_BUDGET_SECONDS = env_int("NOTIFY_SWEEP_BUDGET_SECONDS", 45)
# A claimed batch waits in the broker at most this long before a later sweep claims it again.
NOTIFY_HANDOVER_LEASE_SECONDS = env_int("NOTIFY_HANDOVER_LEASE_SECONDS", 60)
NOTIFY_SWEEP_MAX_IN_FLIGHT = env_int("NOTIFY_SWEEP_MAX_IN_FLIGHT", 20_000)
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 8)
NOTIFY_RETRY_BASE_SECONDS = env_int("NOTIFY_RETRY_BASE_SECONDS", 60)
NOTIFY_RETRY_MAX_SECONDS = env_int("NOTIFY_RETRY_MAX_SECONDS", 6 * 3600)
NOTIFY_DIGEST_THRESHOLD = env_int("NOTIFY_DIGEST_THRESHOLD", 5)
NOTIFY_HTTP_TIMEOUT_SECONDS = env_int("NOTIFY_HTTP_TIMEOUT_SECONDS", 10)
NOTIFY_PUSH_TTL_SECONDS = env_int("NOTIFY_PUSH_TTL_SECONDS", 86_400)
NOTIFY_HEALTH_MAX_SWEEP_AGE_SECONDS = env_int("NOTIFY_HEALTH_MAX_SWEEP_AGE_SECONDS", 180)
NOTIFY_HEALTH_MAX_LAG_SECONDS = env_int("NOTIFY_HEALTH_MAX_LAG_SECONDS", 900)
NOTIFY_WEBPUSH_ALLOW_HTTP = env_bool("NOTIFY_WEBPUSH_ALLOW_HTTP", False)
NOTIFY_MESSAGE_ID_DOMAIN = env_str("NOTIFY_MESSAGE_ID_DOMAIN", "carnet.localhost")
FCM_ACCESS_TOKEN = env_str("FCM_ACCESS_TOKEN", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# Security: strict in production (check --deploy passes with no warning).
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SESSION_COOKIE_AGE = int(timedelta(hours=12).total_seconds())
