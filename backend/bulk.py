"""``bulk_update`` for the nightly re-plan's volumes: one array parameter per column on PostgreSQL.

Django's ``QuerySet.bulk_update`` writes ``SET col = CASE WHEN id = 1 THEN … WHEN id = 2 THEN …
END`` for every column, building and resolving one ``When`` expression per row and column in
Python, and PostgreSQL then parses and plans a statement of that size: re-planning 1,000
patients the day after (a status or ``days_late`` moves on ~2,400 items) spent most of its time
there (cProfile: 33 of 56 s in ``bulk_update``, ~40,000 expressions resolved).

``rows_update`` sends instead::

    UPDATE t SET c1 = v.c1, … FROM unnest(%s::bigint[], %s::c1_type[], …) AS v(id, c1, …)
    WHERE t.id = v.id

with each column's values prepared by its field (``get_db_prep_save``, as Django's own update
does), so what is stored is what ``bulk_update`` stores; like it, no signal is sent, ``save`` is
not called and ``auto_now`` fields are written as the objects hold them. As with it, an object
without a primary key is refused before anything is written, and the chunks are written in one
transaction (all or none). Other databases go through ``bulk_update``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Field, Model

__all__ = ["rows_update"]

# Rows per statement: one array per column, so the statement's size does not grow with it; the
# bound only keeps each array under a few megabytes.
CHUNK = 5000


def rows_update(objs: Sequence[Model], fields: Sequence[str], *, batch_size: int = CHUNK) -> int:
    """Write ``fields`` of ``objs`` (instances of one model) by primary key; the rows written."""
    if not objs:
        return 0
    model = type(objs[0])
    if any(type(obj) is not model for obj in objs):
        raise ValueError("rows_update: all objects must be instances of one model")
    if not fields:
        raise ValueError("rows_update: no field to write")
    if any(obj.pk is None for obj in objs):
        raise ValueError("rows_update: every object needs a primary key")
    meta = model._meta
    columns: list[Field[Any, Any]] = []
    for name in fields:
        field = meta.get_field(name)
        if not isinstance(field, Field) or not field.concrete or field.primary_key or field.many_to_many:
            raise ValueError(f"rows_update: {name} is not a writable column")
        columns.append(field)
    alias = router.db_for_write(model)
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return model._default_manager.db_manager(alias).bulk_update(objs, list(fields), batch_size=batch_size)
    pk = meta.pk
    assert pk is not None
    qn = connection.ops.quote_name
    table = qn(meta.db_table)
    names = [qn(_column(field)) for field in columns]
    types = [_array_type(pk, connection), *(_array_type(field, connection) for field in columns)]
    # Identifiers quoted from the model's metadata and types from its fields: no value in the text.
    assignments = ", ".join(f"{name} = v.{name}" for name in names)
    arrays = ", ".join(f"%s::{kind}" for kind in types)
    key = qn(_column(pk))
    sql = f"UPDATE {table} AS t SET {assignments} FROM unnest({arrays}) AS v({key}, {', '.join(names)}) WHERE t.{key} = v.{key}"  # noqa: S608, E501
    written = 0
    # All chunks or none, as ``bulk_update`` does (a no-op inside the caller's transaction).
    with transaction.atomic(using=alias, savepoint=False), connection.cursor() as cursor:
        for start in range(0, len(objs), batch_size):
            chunk = objs[start : start + batch_size]
            params = [[pk.get_db_prep_value(obj.pk, connection) for obj in chunk]]
            for field in columns:
                attname = field.attname
                params.append([field.get_db_prep_save(getattr(obj, attname), connection) for obj in chunk])
            cursor.execute(sql, params)
            written += cursor.rowcount
    return written


def _array_type(field: Field[Any, Any], connection: Any) -> str:
    """The SQL array type of ``field``'s column (``varchar(120)[]``, ``jsonb[]``, …)."""
    kind = field.cast_db_type(connection) if hasattr(field, "cast_db_type") else field.db_type(connection)
    if kind is None:
        raise ValueError(f"rows_update: {field.name} has no column type")
    return f"{kind}[]"


def _column(field: Field[Any, Any]) -> str:
    column = field.column
    if not column:
        raise ValueError(f"rows_update: {field.name} has no column")
    return column
