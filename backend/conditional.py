"""Conditional GET for the patient's polled reads (plan, booklet): ETag, If-None-Match → 304.

The app polls its plan and booklet; when nothing changed it gets ``304 Not Modified`` with no
body. The caller chooses the ETag: one the view can know before doing the work (the plan's
revision, the booklet's), or a hash of the rendered body (the bytes are not sent again, the
queries still run). A body known by such a revision can be kept in ``BodyCache``, so a repeated
``GET`` without ``If-None-Match`` does not render it again. Responses are
``Cache-Control: private, no-cache``: a shared cache must not keep a patient's data, and the app
must revalidate every time.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer

CACHE_CONTROL = "private, no-cache"
_renderer = JSONRenderer()
# Plain data (str, int, bool, None, lists, dicts) as DRF's JSONRenderer writes it: UTF-8, compact.
json_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def json_object_sql(pairs: list[tuple[str, str]], *, json_values: bool = False) -> str:
    """SQL whose value is the compact JSON text of an object (as ``json_text`` writes it) from
    (name, SQL value) pairs, a SQL NULL as ``null``; with ``json_values``, the values are JSON
    text already, never NULL (``json_value_sql``). Names are the code's own (serializer fields),
    never input.

    Each value is JSON text between constant keys, joined by one ``concat``.
    ``json_build_object`` writes ``{"id" : …, "kind" : …}``: about 10 % more bytes (a ten-year
    booklet: 73 KB against 66 KB) for the same statement time (alternated: 5.5 and 5.2 ms,
    within noise).
    """
    parts: list[str] = []
    for index, (name, value) in enumerate(pairs):
        key = ("{" if index == 0 else ",") + json_text(name) + ":"
        parts += ["'" + key.replace("'", "''") + "'", value if json_values else json_value_sql(value)]
    return f"concat({', '.join(parts)}, '}}')" if parts else "'{}'"


# Text that JSON writes between quotes as it is, and SQL as a literal: nothing to escape in either.
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9 _.,:;/()+-]*")


def json_value_sql(value: str, kind: str = "any", *, plain: Iterable[str] = ()) -> str:
    """SQL whose value is the JSON text of the SQL value ``value``, a SQL NULL as ``null``.

    ``kind`` says what ``value`` is, so that the values with nothing to escape skip ``to_json``
    (which looks up the type of its argument, three catalogue lookups, on every call: a fifth of
    the booklet's statement): ``"uuid"`` (written between quotes), ``"int"`` and ``"bool"``
    (their text), ``"string"`` (text that needs no escaping, e.g. a ``round(…)::text`` number:
    between quotes), ``"json"`` (JSON text already, e.g. an instant from ``instant_json_sql``).
    ``"text"``: a text column (named three times: a column, not a placeholder); its empty string
    and the ``plain`` values (a choice field's, each of letters, digits and ``_.,:;/()+-`` or
    space) are written between quotes, anything else through ``to_json`` (a ``CASE`` on
    constants costs under half of ``to_json``). ``"any"``:
    ``to_json``, which escapes text as Python's ``json`` does (``"``, ``\\``, control
    characters; UTF-8 kept).
    """
    if kind == "any":
        text = f"to_json({value})::text"
    elif kind == "text":
        known = sorted({"", *plain})
        odd = [word for word in known if not _PLAIN_TEXT.fullmatch(word)]
        if odd:
            raise ValueError(f"not plain text: {odd[0]!r}")
        literals = ", ".join(f"'{word}'" for word in known)  # checked: no quote, no backslash
        text = f"CASE WHEN ({value}) IN ({literals}) THEN '\"' || ({value}) || '\"' ELSE to_json({value})::text END"
    elif kind in ("uuid", "string"):
        text = f"'\"' || ({value})::text || '\"'"
    elif kind in ("int", "bool"):
        text = f"({value})::text"
    elif kind == "json":
        text = value
    else:
        raise ValueError(f"unknown kind of JSON value: {kind}")
    return f"COALESCE({text}, 'null')"


# An instant as DRF writes it (Python's ``isoformat`` in the current time zone, ``Z`` for UTC, no
# ``.000000``): ``to_char`` in the session's time zone, which the statement sets to the reader's
# itself (``session_zone_sql``). Offsets with seconds (local mean time, before about 1900) lose
# them. Half the cost of converting with ``AT TIME ZONE`` by name (``carnet_isoformat_json``).
_INSTANT_JSON = (
    "'\"' || replace(replace(to_char({}, 'YYYY-MM-DD\"T\"HH24:MI:SS.USTZH:TZM'), '.000000', ''), '+00:00', 'Z') || '\"'"
)


def instant_json_sql(value: str) -> str:
    """SQL: the JSON string DRF writes for the ``timestamptz`` ``value`` (NULL for NULL), in the
    session's time zone: only inside a statement that set it (``session_zone_sql``)."""
    return _INSTANT_JSON.format(value)


def session_zone_sql(zone: str, *, alias: str = "p") -> tuple[str, str]:
    """Columns that set the session's time zone to ``zone`` (SQL text) for the rest of the
    statement, and the column that puts it back.

    The first pair goes in a ``FROM`` subquery of one row named ``alias`` (``set_config`` is
    volatile: the subquery is not flattened into the outer query, so it runs before the outer
    columns): the time zone in force (``prior_zone``), then the new one (``zone``, what
    ``set_config`` returns). The second goes last in the outer ``SELECT``, after every instant.
    Both are ``is_local`` settings: a statement on its own (autocommit) ends with the time zone
    as it was anyway, and a rolled-back transaction or savepoint undoes them.
    """
    first = f"current_setting('TimeZone') AS prior_zone, set_config('TimeZone', {zone}, true) AS zone"
    return first, f"set_config('TimeZone', {alias}.prior_zone, true)"


# For the schema of a conditional GET.
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="The ETag of the copy you hold: 304 (no body) when it is still current.",
)
NOT_MODIFIED = OpenApiResponse(description="Not modified: the copy named in If-None-Match is current.")


class PolledNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation, answered at once for what a polling app sends.

    No ``Accept``, ``*/*`` or exactly the first renderer's type, with no ``?format=`` or format
    suffix, is the first renderer whatever DRF's parsing of the header would find; anything else
    goes through DRF's negotiation (so ``Accept: text/html`` is still 406).
    """

    def select_renderer(
        self, request: Any, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        accept = request.META.get("HTTP_ACCEPT", "")
        first = renderers[0]
        if not format_suffix and not request.META.get("QUERY_STRING") and accept in ("", "*/*", first.media_type):
            return first, str(first.media_type)
        return super().select_renderer(request, renderers, format_suffix)  # type: ignore[no-any-return]  # DRF untyped


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def etag_matches(request: HttpRequest, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 §13.1.2) or is ``*``."""
    header = request.META.get("HTTP_IF_NONE_MATCH")  # not ``request.headers``: built from all of META
    if not header:
        return False
    tags = parse_etags(header)
    return "*" in tags or _opaque(etag) in {_opaque(tag) for tag in tags}


def not_modified(etag: str) -> HttpResponse:
    response = HttpResponseNotModified()
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    return response


def body_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def json_response(request: HttpRequest, data: Any, *, etag: str | None = None) -> HttpResponse:
    """``data`` as JSON (DRF's renderer: same bytes as ``Response``), with an ETag; 304 if it matches.

    Without ``etag``, the ETag is a hash of the body.
    """
    return json_bytes_response(request, _renderer.render(data), etag=etag)


def json_bytes_response(request: HttpRequest, body: bytes, *, etag: str | None = None) -> HttpResponse:
    """A JSON document already rendered (by the database, say), with an ETag; 304 if it matches."""
    etag = etag or body_etag(body)
    if etag_matches(request, etag):
        return not_modified(etag)
    response = HttpResponse(body, content_type="application/json")
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    return response


class BodyCache:
    """Rendered bodies by a key that names their revision (so an entry is never stale), in this
    process, least recently used first out, at most ``max_bytes`` of bodies.

    Per process, not shared: nothing to invalidate (a new revision is a new key) and no round
    trip, at the price of each worker rendering a body once. Thread-safe (gthread workers).
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._bodies: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        with self._lock:
            if key in self._bodies:
                return
            self._bodies[key] = body
            self.size += len(body)
            while self.size > self.max_bytes:
                _, dropped = self._bodies.popitem(last=False)
                self.size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._bodies.clear()
            self.size = 0
