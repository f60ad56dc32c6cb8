"""Django's PostgreSQL backend, reading ``timestamptz`` values with psycopg's C parser.

Django registers its own loader for ``timestamptz`` on every connection (``BaseTzLoader`` in
``django.db.backends.postgresql.psycopg_any``): it sets the connection's time zone on each value,
but derives from psycopg's pure-Python loader, so with ``psycopg[binary]`` installed every
timestamp still parses in Python: ~8 µs a value, against ~1.5 µs for psycopg's C loader (a
20,000-row read of two timestamps, 2026-11-22). A ten-year iCal feed reads ~850 of them per
render. Django ticket #36960 and psycopg issue #1273 describe the same; the C loader cannot be
subclassed (it is final), so the loader here is Django's, parsing through an instance of the C
loader when psycopg has one.

The values are the same objects Django's loader gives: the C loader parses in the session's
time zone, which Django sets to the connection's (UTC), and the result gets the connection's
``tzinfo`` as before. Everything else is Django's backend; ``vendor`` is still "postgresql".
Select it with ``ENGINE = "backend.db"`` (``backend/settings.py`` does for a ``postgres://``
``DATABASE_URL``).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any

import psycopg
from django.db.backends.postgresql import base as postgresql
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from psycopg import adapt
from psycopg.pq import Format

TIMESTAMPTZ_OID = psycopg.postgres.types["timestamptz"].oid
# The loader psycopg itself uses for text-format ``timestamptz``: the C one with psycopg[binary]
# or psycopg[c], else the pure-Python class Django's derives from.
_OPTIMISED = psycopg.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)


class FastTzLoader(BaseTzLoader):  # type: ignore[misc]  # django-stubs do not type psycopg_any
    """Django's ``timestamptz`` loader (``timezone`` set per connection), parsing in C when it can."""

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._parse = _OPTIMISED(oid, context).load if _OPTIMISED is not None else None

    def load(self, data: Any) -> datetime:
        if self._parse is None:
            return super().load(data)  # type: ignore[no-any-return]
        return self._parse(data).replace(tzinfo=self.timezone)  # type: ignore[no-any-return]


@lru_cache
def _adapters(template: Any, zone: tzinfo | None) -> Any:
    """Django's adapters map for (USE_TZ, zone) with ``FastTzLoader`` for the zone; one per zone."""
    adapters = adapt.AdaptersMap(template)
    loader = type("SpecificFastTzLoader", (FastTzLoader,), {"timezone": zone})
    adapters.register_loader("timestamptz", loader)
    return adapters


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        if "context" in params:  # psycopg 3
            params["context"] = _adapters(params["context"], self.timezone)
        return params
