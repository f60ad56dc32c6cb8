# Carnet: one image for the web, the Celery worker and Celery beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=backend.settings \
    CARNET_VAR_DIR=/app/var

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# The clinical rules compiled by mypyc (scheduling/rules/_native.py, ~1.45x on the engine); the C
# compiler leaves with this step. A failed build leaves the plain rules, which give the same plans.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && (python -m scheduling.compile_rules build || true) \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# Static files are collected at build time with the production storage (hashed names, compressed);
# the key below exists only for this build step and is not kept in the image's environment.
RUN mkdir -p /app/var/broker/out /app/var/broker/processed \
    && DJANGO_ENV=production SECRET_KEY=collectstatic-build-step-only-not-a-runtime-secret-0123456789 \
       ALLOWED_HOSTS=build python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home-dir /app carnet \
    && chown -R carnet /app/var

USER carnet
EXPOSE 8000
CMD ["gunicorn", "backend.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
