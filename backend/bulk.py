"""``bulk_update`` for the nightly re-plan's volumes: one array parameter per column on PostgreSQL.

Django's ``QuerySet.bulk_update`` writes ``SET col = CASE WHEN id = 1 THEN … WHEN id = 2 THEN …
END`` for every column, building and resolving one ``When`` expression per row and column in
Python, and PostgreSQL then parses and plans a statement of that size: re-planning 1,000
patients the day after (a status or the then stored ``days_late`` moved on ~2,400 items) spent most of its time
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

import json
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from math import isfinite
from typing import Any
from uuid import UUID

from django.db import connections, router, transaction
from django.db.models import Field, Model
from psycopg.types.json import Json, Jsonb

__all__ = ["array_text", "rows_insert_sql", "rows_update"]

# Rows per statement: one array per column, so the statement's size does not grow with it; the
# bound only keeps each array under a few megabytes.
CHUNK = 5000


def rows_update(objs: Sequence[Model], fields: Sequence[str], *, batch_size: int = CHUNK) -> int:
    """Write ``fields`` of ``objs`` (instances of one model) by primary key; the rows written."""
    if not objs:
        return 0
    model = _model_of(objs, "rows_update")
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
            params = [array_text([pk.get_db_prep_value(obj.pk, connection) for obj in chunk])]
            for field in columns:
                attname = field.attname
                params.append(array_text([field.get_db_prep_save(getattr(obj, attname), connection) for obj in chunk]))
            cursor.execute(sql, params)
            written += cursor.rowcount
    return written


def rows_insert_sql(objs: Sequence[Model], *, connection: Any, suffix: str = "") -> tuple[str, list[Any]]:
    """``INSERT INTO t (c1, …) SELECT * FROM unnest(%s::c1_type[], …) <suffix>`` for ``objs``
    (new instances of one model) on PostgreSQL: the statement and its parameters, one array per
    column, so that a caller can add ``ON CONFLICT``, ``RETURNING`` or wrap it in a CTE.

    The values are those ``bulk_create`` writes: every concrete column but an automatic primary
    key, each value through its field's ``pre_save(obj, add=True)`` (``auto_now_add``,
    ``auto_now``: set on the objects too) and ``get_db_prep_save``.
    """
    if not objs:
        raise ValueError("rows_insert_sql: no object to insert")
    meta = _model_of(objs, "rows_insert_sql")._meta
    pk = meta.pk
    fields = [
        field
        for field in meta.concrete_fields
        if not (field is pk and getattr(field, "db_returning", False)) and not getattr(field, "generated", False)
    ]
    qn = connection.ops.quote_name
    names = ", ".join(qn(_column(field)) for field in fields)
    arrays = ", ".join(f"%s::{_array_type(field, connection)}" for field in fields)
    params = [
        array_text([field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in objs]) for field in fields
    ]
    sql = f"INSERT INTO {qn(meta.db_table)} ({names}) SELECT * FROM unnest({arrays}) {suffix}".rstrip()  # noqa: S608
    return sql, params


def _model_of(objs: Sequence[Model], caller: str) -> type[Model]:
    """The one model of ``objs`` (not empty), or ``ValueError`` naming ``caller``."""
    model = type(objs[0])
    if any(type(obj) is not model for obj in objs):
        raise ValueError(f"{caller}: all objects must be instances of one model")
    return model


def array_text(values: list[Any]) -> str | list[Any]:
    """``values`` as the text of a PostgreSQL array (``{1,NULL,"a \\"b\\""}``), which the statement
    casts to the column's array type; ``values`` as they are if one is of a kind not written here
    (psycopg then sends the list).

    psycopg quotes a list parameter element by element in Python (a regular expression per
    string), about a sixth of a next-day re-plan's writing. Here each element becomes the text the
    type's input function reads: integers as digits, booleans ``t``/``f``, decimals and finite
    floats as their ``str``, dates and instants in ISO 8601 (with their offset), UUIDs in hex, JSON
    as the field's own ``dumps`` writes it; double-quoted with ``\\`` and ``"`` escaped (all but
    integers), and NULL bare.
    """
    out: list[str] = []
    for value in values:
        if value is None:
            out.append("NULL")
        elif isinstance(value, bool):
            out.append("t" if value else "f")
        elif isinstance(value, int):
            out.append(str(int(value)))  # an IntegerChoices member too
        elif isinstance(value, str):
            out.append(_quoted(value))
        elif isinstance(value, Decimal) or (isinstance(value, float) and isfinite(value)):
            out.append(_quoted(str(value)))
        elif isinstance(value, date):  # a datetime is a date
            out.append(_quoted(value.isoformat()))
        elif isinstance(value, UUID):
            out.append(_quoted(str(value)))
        elif isinstance(value, (Json, Jsonb)):
            text = (value.dumps or json.dumps)(value.obj)
            out.append(_quoted(text if isinstance(text, str) else bytes(text).decode()))
        else:
            return values
    return "{" + ",".join(out) + "}"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
