"""``DaysLate``: an item's days late in SQL, on its patient's local date, as the rules give it.

The rules' ``days_late_on`` (``scheduling/rules/items.py``) in a query, so that the worklist can
order and filter by it: for an item of a late status (due, overdue, blocked), the days from its
due date to its patient's local date at ``now`` (TIME-01), never negative; 0 otherwise. Each
row's date comes from its own patient's time zone (a care team may span several).

PostgreSQL converts the instant with ``AT TIME ZONE``; SQLite with the function Django registers
on each of its connections for its own time zone conversions (``django_datetime_cast_date``);
another database is refused (``NotSupportedError``) rather than given a guess.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import NotSupportedError
from django.db.models import F, Func, IntegerField
from django.utils import timezone

from scheduling.rules.items import LATE


class DaysLate(Func):
    """Days late of the queried plan items at ``now`` (default: now), each on its patient's date."""

    output_field = IntegerField()

    def __init__(self, now: datetime | None = None) -> None:
        moment = now or timezone.now()
        if timezone.is_naive(moment):
            raise ValueError("DaysLate: now must be an aware datetime")
        self.moment = moment
        super().__init__(F("status"), F("due"), F("patient__timezone"))

    def _parts(self, compiler: Any) -> list[tuple[str, list[Any]]]:
        """(SQL, parameters) of the status, the due date and the time zone."""
        return [(sql, list(params)) for sql, params in (compiler.compile(e) for e in self.get_source_expressions())]

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        (status, status_params), (due, due_params), (tz, tz_params) = self._parts(compiler)
        late = ", ".join(["%s"] * len(LATE))
        sql = (
            f"(CASE WHEN {status} IN ({late}) "
            f"THEN GREATEST(((%s::timestamptz AT TIME ZONE {tz})::date - {due}), 0) ELSE 0 END)"
        )
        # In the order of their placeholders.
        return sql, [*status_params, *LATE, self.moment, *tz_params, *due_params]

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        (status, status_params), (due, due_params), (tz, tz_params) = self._parts(compiler)
        late = ", ".join(["%s"] * len(LATE))
        # Django stores instants in UTC on SQLite; its function reads them so and converts to ``tz``.
        stamp = timezone.make_naive(self.moment, UTC).isoformat(sep=" ")
        sql = (
            f"(CASE WHEN {status} IN ({late}) "
            f"THEN MAX(CAST(julianday(django_datetime_cast_date(%s, {tz}, 'UTC')) - julianday({due}) AS INTEGER), 0) "
            "ELSE 0 END)"
        )
        return sql, [*status_params, *LATE, stamp, *tz_params, *due_params]

    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> Any:
        raise NotSupportedError(f"DaysLate: no SQL written for {connection.vendor}")
