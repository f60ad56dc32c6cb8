"""Secret-URL calendar feeds: tokens, their services, and the ``/ical/<token>.ics`` view.

A token is ``secrets.token_urlsafe(32)`` (256 random bits) shown once; only its SHA-256 is
stored. Looking a token up costs the same whether it exists or not: the presented token is
always hashed, always looked up by hash (``ical_state.feed_state``: one indexed query that also
reads the feed's ETag state), and always compared with ``hmac.compare_digest`` (against a dummy
hash when nothing matched). Requests are counted per client IP and per token in the Django cache
before any database work, so guessing is throttled before it touches the database. A rendered
feed is cached under its ETag: clients poll hourly, an unchanged feed costs that one query, and
the feed is rendered again only when what it shows has changed.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from typing import Any

from django.conf import settings
from django.core.cache import BaseCache, cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_http_methods

from backend.errors import CarnetError, Conflict
from patients.models import CareTeam, Patient, StaffMembership, User
from scheduling import ical, ical_state
from scheduling.models_feeds import CalendarFeed

TOKEN_BYTES = 32
CACHE_CONTROL = "private, max-age=300"


class FeedForbidden(CarnetError):
    status = 403
    code = "forbidden"


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _new_token() -> tuple[str, str]:
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    return raw, token_hash(raw)


def feed_urls(token: str) -> dict[str, str]:
    """The feed's address for a browser (``https``) and for a calendar app (``webcal``)."""
    path = reverse("ical-feed", kwargs={"token": token})
    https = f"{settings.SITE_URL.rstrip('/')}{path}"
    return {"https": https, "webcal": "webcal://" + https.split("://", 1)[-1]}


# --- services -------------------------------------------------------------------------------


def _is_member(user: User, team_id: int) -> bool:
    return StaffMembership.objects.filter(user=user, care_team_id=team_id).exists()


def _check_may_manage(feed: CalendarFeed, by: User) -> None:
    if feed.kind == CalendarFeed.Kind.PATIENT:
        assert feed.patient is not None
        allowed = (feed.patient.user_id is not None and feed.patient.user_id == by.pk) or (
            by.is_care_staff and _is_member(by, feed.patient.care_team_id)
        )
    elif feed.kind == CalendarFeed.Kind.NURSE:
        allowed = by.pk == feed.user_id and by.is_care_staff
    else:
        assert feed.care_team_id is not None
        allowed = by.pk == feed.user_id and by.is_care_staff and _is_member(by, feed.care_team_id)
    if not (allowed and by.is_active):
        raise FeedForbidden("You may not manage this calendar feed.", field="by")


def _save(feed: CalendarFeed, *, by: User, **kwargs: Any) -> None:
    try:
        feed.full_clean()
    except ValidationError as exc:
        if any(e.code == "unique" or "uniq_live" in str(e) for errs in exc.error_dict.values() for e in errs):
            raise Conflict(
                "A live feed already exists for this owner; rotate it instead.", field="kind", code="feed_exists"
            ) from exc
        field, messages = next(iter(exc.message_dict.items()))
        raise CarnetError(messages[0], field=None if field == "__all__" else field) from exc
    feed._history_user = by  # type: ignore[attr-defined]  # read by simple-history
    feed.save(**kwargs)


@transaction.atomic
def feed_create(
    *,
    kind: str,
    by: User,
    patient: Patient | None = None,
    user: User | None = None,
    care_team: CareTeam | None = None,
    precise_titles: bool = False,
) -> tuple[CalendarFeed, str]:
    """Create a feed; returns it with its raw token, which is never stored and never shown again."""
    if kind not in CalendarFeed.Kind.values:
        raise CarnetError(f"Unknown feed kind {kind!r}.", field="kind")
    owners = {
        CalendarFeed.Kind.PATIENT: ("patient", patient is not None and user is None and care_team is None),
        CalendarFeed.Kind.NURSE: ("user", user is not None and patient is None and care_team is None),
        CalendarFeed.Kind.CARE_TEAM: ("care_team", care_team is not None and patient is None),
    }
    field, ok = owners[CalendarFeed.Kind(kind)]
    if not ok:
        raise CarnetError(f"A {kind} feed belongs to exactly one {field.replace('_', ' ')}.", field=field)
    if kind == CalendarFeed.Kind.CARE_TEAM:
        user = user or by  # a team feed is one staff member's subscription, checked on every request
    raw, digest = _new_token()
    feed = CalendarFeed(
        kind=kind,
        patient=patient,
        user=user,
        care_team=care_team,
        token_hash=digest,
        precise_titles=precise_titles,
        created_by=by,
    )
    _check_may_manage(feed, by)
    _save(feed, by=by)
    return feed, raw


def _locked_live(feed: CalendarFeed) -> CalendarFeed:
    locked = CalendarFeed.objects.select_for_update(of=("self",)).select_related("patient").get(pk=feed.pk)
    if locked.revoked_at is not None:
        raise CarnetError("This feed was revoked; create a new one.", field="feed", code="revoked")
    return locked


@transaction.atomic
def feed_rotate(*, feed: CalendarFeed, by: User) -> tuple[CalendarFeed, str]:
    """A new secret URL; the old one gives 404 from this commit on."""
    locked = _locked_live(feed)
    _check_may_manage(locked, by)
    raw, locked.token_hash = _new_token()
    locked.rotated_at = timezone.now()
    _save(locked, by=by, update_fields=["token_hash", "rotated_at", "updated_at"])
    return locked, raw


@transaction.atomic
def feed_revoke(*, feed: CalendarFeed, by: User) -> CalendarFeed:
    locked = CalendarFeed.objects.select_for_update(of=("self",)).select_related("patient").get(pk=feed.pk)
    _check_may_manage(locked, by)
    if locked.revoked_at is None:
        locked.revoked_at = timezone.now()
        _save(locked, by=by, update_fields=["revoked_at", "updated_at"])
    return locked


@transaction.atomic
def feed_update(*, feed: CalendarFeed, by: User, precise_titles: bool) -> CalendarFeed:
    """The patient's opt-in (or opt-out) to precise event titles."""
    locked = _locked_live(feed)
    _check_may_manage(locked, by)
    if locked.precise_titles != precise_titles:
        locked.precise_titles = precise_titles
        _save(locked, by=by, update_fields=["precise_titles", "updated_at"])
    return locked


# --- rate limit -----------------------------------------------------------------------------


def _client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the address the outermost of CARNET_TRUSTED_PROXIES proxies saw."""
    proxies = int(getattr(settings, "CARNET_TRUSTED_PROXIES", 0))
    if proxies > 0:
        chain = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(chain) >= proxies:
            return str(chain[-proxies])
    return str(request.META.get("REMOTE_ADDR") or "")


def _redis_client(backend: BaseCache) -> Any | None:
    """The redis-py client behind Django's Redis cache; None for any other cache."""
    if not isinstance(backend, RedisCache):
        return None
    client = getattr(backend, "_cache", None)  # Django's RedisCacheClient (not public API: checked)
    get_client = getattr(client, "get_client", None)
    return get_client(write=True) if callable(get_client) else None


def _count_requests(keys: list[str], *, timeout: int) -> list[int]:
    """Count one request under each key (a counter living ``timeout`` s); each key's count.

    On Redis, one round trip for all the keys (``SET NX EX`` then ``INCR`` per key, pipelined),
    where ``add`` then ``incr`` cost three per key; any other cache: add, or else increment.
    """
    backend = caches["default"]
    client = _redis_client(backend)
    if client is not None:
        pipeline = client.pipeline(transaction=False)
        for key in keys:
            stored = backend.make_and_validate_key(key)
            pipeline.set(stored, 0, ex=timeout, nx=True)  # Django's Redis cache stores ints as such
            pipeline.incr(stored)
        return [int(count) for count in pipeline.execute()[1::2]]
    counts = []
    for key in keys:
        if backend.add(key, 1, timeout=timeout):
            counts.append(1)
            continue
        try:
            counts.append(int(backend.incr(key)))
        except ValueError:  # expired between add and incr
            backend.set(key, 1, timeout=timeout)
            counts.append(1)
    return counts


def _retry_after(request: HttpRequest, digest: str) -> int | None:
    """Count the request per client IP and per token in a fixed window; seconds to wait when over."""
    limit = int(getattr(settings, "CARNET_ICAL_RATE_LIMIT", 60))
    period = int(getattr(settings, "CARNET_ICAL_RATE_PERIOD", 60))
    now = time.time()
    window = int(now // period)
    keys = [
        f"ical-rate:{scope}:{hashlib.sha256(ident.encode()).hexdigest()[:24]}:{window}"
        for scope, ident in (("ip", _client_ip(request)), ("token", digest))
    ]
    if all(count <= limit for count in _count_requests(keys, timeout=period * 2)):
        return None
    return max(1, math.ceil((window + 1) * period - now))


# --- view -----------------------------------------------------------------------------------


def _problem(status: int, title: str, detail: str, code: str) -> JsonResponse:
    return JsonResponse(
        {
            "type": f"https://carnet.example/problems/{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "field": None,
            "code": code,
        },
        status=status,
        content_type="application/problem+json",
        headers={"Cache-Control": "no-store"},
    )


@gzip_page
@require_http_methods(["GET", "HEAD"])
def ical_feed(request: HttpRequest, token: str) -> HttpResponseBase:
    """``GET /ical/<token>.ics``: the feed, 304 when unchanged, 404 for any unknown or revoked token."""
    digest = token_hash(token)
    wait = _retry_after(request, digest)
    if wait is not None:
        response = _problem(429, "Too many requests", "Too many requests for this calendar feed.", "throttled")
        response["Retry-After"] = str(wait)
        return response
    now = timezone.now()
    # One query: the live feed behind the token and its ETag; the 304 path stops here.
    state = ical_state.feed_state(digest=digest, now=now)
    if state is None:
        return _problem(404, "Not found", "No such calendar feed.", "not_found")
    headers = {
        "ETag": f'W/"{state.etag}"',
        "Last-Modified": http_date(state.last_modified.timestamp()),
        "Cache-Control": CACHE_CONTROL,
    }
    not_modified = get_conditional_response(
        request, etag=headers["ETag"], last_modified=int(state.last_modified.timestamp())
    )
    if not_modified is not None:
        for name, value in headers.items():
            not_modified[name] = value
        return not_modified
    # The bytes are a function of the ETag's inputs: render once per change, not once per poll.
    key = f"ical-body:{state.etag}"
    content = cache.get(key)
    if not isinstance(content, bytes):
        content = ical.feed_render(state.owner, now=now)
        cache.set(key, content, timeout=int(getattr(settings, "CARNET_ICAL_BODY_CACHE_SECONDS", 6 * 3600)))
    ok = HttpResponse(content, content_type="text/calendar; charset=utf-8")
    for name, value in headers.items():
        ok[name] = value
    ok["Content-Disposition"] = 'inline; filename="carnet.ics"'
    ok["X-Robots-Tag"] = "noindex, nofollow"
    return ok
