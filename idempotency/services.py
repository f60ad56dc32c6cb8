"""Replay of retried POSTs (``Idempotency-Key``), as a decorator for DRF view methods.

The first request with a key runs inside one transaction that also inserts the key's row; its
2xx response is stored on that row before the commit. Any other outcome (an error response or
an exception) rolls the row back with everything else, so the client may fix and retry.

A retry with the same key, the same body and the same user gets the stored response again
(``Idempotent-Replayed: true``) and creates nothing. The same key with a different body (or on
another endpoint) gets 422. Two concurrent requests with one key cannot both run: the unique
constraint on (user, key) makes the second insert wait for the first transaction, then fail;
the second then reads the committed row under ``select_for_update`` and replays it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework.response import Response

from backend.errors import CarnetError
from idempotency.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255

F = TypeVar("F", bound=Callable[..., Response])


class IdempotencyKeyReused(CarnetError):
    status = 422
    code = "idempotency_key_reused"


def request_hash(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    raw = f"{request.method}\n{request.path}\n{body}".encode()
    return hashlib.sha256(raw).hexdigest()


def _replay(record: IdempotencyRecord, digest: str) -> Response:
    if record.request_hash != digest:
        raise IdempotencyKeyReused(_("This Idempotency-Key was already used with a different request."), field=HEADER)
    response = Response(record.response_body, status=record.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


class _NotStored(Exception):
    """Carries a non-2xx response out of the atomic block, so the key's row is rolled back."""

    def __init__(self, response: Response) -> None:
        self.response = response


def idempotent(method: F) -> F:
    """Honour ``Idempotency-Key`` on an authenticated DRF view method (POST)."""

    @functools.wraps(method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None or not request.user.is_authenticated:
            return method(view, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            raise CarnetError(_("An Idempotency-Key has 1 to %(n)d characters.") % {"n": MAX_KEY_LENGTH}, field=HEADER)
        digest = request_hash(request)
        try:
            with transaction.atomic():
                try:
                    with transaction.atomic():
                        record = IdempotencyRecord.objects.create(
                            user=request.user,
                            key=key,
                            method=request.method or "POST",
                            path=request.path[:500],
                            request_hash=digest,
                            status_code=0,
                        )
                except IntegrityError:
                    existing = IdempotencyRecord.objects.select_for_update().get(user=request.user, key=key)
                    return _replay(existing, digest)
                response = method(view, request, *args, **kwargs)
                if not 200 <= response.status_code < 300:
                    raise _NotStored(response)
                record.status_code = response.status_code
                record.response_body = json.loads(json.dumps(response.data, cls=DjangoJSONEncoder))
                record.save(update_fields=["status_code", "response_body"])
                return response
        except _NotStored as stop:
            return stop.response

    wrapper.idempotent = True  # type: ignore[attr-defined]  # read by the test that walks every POST
    return wrapper  # type: ignore[return-value]  # same signature as ``method``


def idempotency_records_purge(*, now: Any = None) -> int:
    """Forget keys older than IDEMPOTENCY_KEY_TTL_HOURS (a retry after that runs again)."""
    moment = now or timezone.now()
    cutoff = moment - timedelta(hours=int(getattr(settings, "IDEMPOTENCY_KEY_TTL_HOURS", 24)))
    deleted, _counts = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
