"""Migration operations shared by the migrations that build or drop indexes online.

On PostgreSQL an index is built or dropped ``CONCURRENTLY`` (the table keeps taking writes; the
migration must then be non-atomic); on SQLite, the embedded default, it is plain DDL.
Imported by migrations: keep these names and their behaviour stable.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db.migrations.operations import AddConstraint, AddIndex, RemoveIndex
from django.db.models import UniqueConstraint

__all__ = ["AddIndexOnline", "AddUniqueConstraintOnline", "RemoveIndexOnline"]


class AddIndexOnline(AddIndexConcurrently):
    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class RemoveIndexOnline(RemoveIndexConcurrently):
    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddUniqueConstraintOnline(AddConstraint):
    """``AddConstraint`` of a ``UniqueConstraint`` on columns, its index built ``CONCURRENTLY`` on
    PostgreSQL: on plain columns the index then becomes the constraint (``ADD CONSTRAINT … UNIQUE
    USING INDEX``, what ``AddConstraint`` would have made, a lock of a moment); a partial one stays
    the unique index Django makes of it. An index of that name left invalid by an interrupted
    build is dropped and built again. Elsewhere, plain DDL."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if schema_editor.connection.vendor != "postgresql" or not self.allow_migrate_model(
            schema_editor.connection.alias, model
        ):
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        constraint = self.constraint
        # ``include`` is not in django-stubs' UniqueConstraint.
        if not isinstance(constraint, UniqueConstraint) or constraint.expressions or getattr(constraint, "include", ()):
            raise ValueError(f"{constraint.name}: only a unique constraint on columns is built online")
        qn = schema_editor.quote_name
        name = constraint.name
        if constraint.condition is None:
            table = qn(model._meta.db_table)
            columns = ", ".join(qn(model._meta.get_field(f).column) for f in constraint.fields)
            create = f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {qn(name)} ON {table} ({columns})"
        else:
            statement = str(constraint.create_sql(model, schema_editor))
            if not statement.startswith("CREATE UNIQUE INDEX "):
                raise ValueError(f"{name}: unexpected DDL {statement!r}")
            create = statement.replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ", 1)
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
                [name],
            )
            found = cursor.fetchone()
        if found is not None and not found[0]:
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {qn(name)}")
        schema_editor.execute(create)
        if constraint.condition is None:
            schema_editor.execute(
                f"ALTER TABLE {qn(model._meta.db_table)} ADD CONSTRAINT {qn(name)} UNIQUE USING INDEX {qn(name)}"
            )
