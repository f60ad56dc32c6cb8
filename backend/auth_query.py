"""The user behind a bearer token, read in one query whose SQL is built once per process.

Every API request authenticates. With the ORM, building the query (user, their patient record,
and whether the token's session was signed out) costs more CPU than PostgreSQL spends running
it; here the SQL is built once from the models' metadata (and prepared once per connection on
PostgreSQL, ``backend.prepared``), and each row goes through the same database converters and
``Model.from_db`` the ORM uses, with the patient cached on the user as ``select_related("patient")``
would. ``tests/api/test_auth.py`` and the permission matrix cover it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from backend.prepared import Prepared
from patients.models import Patient, User


class _UserQuery:
    def __init__(self) -> None:
        quote = connection.ops.quote_name
        self.user_fields = list(User._meta.concrete_fields)
        self.patient_fields = list(Patient._meta.concrete_fields)
        columns = [f"u.{quote(str(f.column))}" for f in self.user_fields]
        columns += [f"p.{quote(str(f.column))}" for f in self.patient_fields]
        blacklisted = quote(BlacklistedToken._meta.db_table)
        outstanding = quote(OutstandingToken._meta.db_table)
        revoked = (
            f"EXISTS (SELECT 1 FROM {blacklisted} b"  # noqa: S608  # names from the models' metadata
            f" INNER JOIN {outstanding} o ON o.id = b.token_id WHERE o.jti = %s)"
        )
        patient_user_field: Any = Patient._meta.get_field("user")
        patient_user = quote(str(patient_user_field.column))
        id_field: Any = User._meta.get_field(jwt_settings.USER_ID_FIELD)  # the token's subject
        self.id_field = id_field
        # Table and column names come from the models' metadata only.
        self.sql = (
            f"SELECT {', '.join(columns)}, {revoked}"  # noqa: S608
            f" FROM {quote(User._meta.db_table)} u"
            f" LEFT OUTER JOIN {quote(Patient._meta.db_table)} p ON p.{patient_user} = u.{quote('id')}"
            f" WHERE u.{quote(str(id_field.column))} = %s"
        )
        self.statement = Prepared("carnet_token_user", self.sql, ("text", str(id_field.db_type(connection))))
        self.converters = [self._converters(field, "u") for field in self.user_fields] + [
            self._converters(field, "p") for field in self.patient_fields
        ]

    @staticmethod
    def _converters(field: Any, alias: str) -> tuple[Any, list[Any]]:
        column = field.get_col(alias)
        return column, connection.ops.get_db_converters(column) + field.get_db_converters(connection)

    def fetch(self, *, user_id: Any, session: str) -> tuple[User, bool] | None:
        key = self.id_field.get_db_prep_value(self.id_field.to_python(user_id), connection)
        with connection.cursor() as cursor:
            self.statement.run(cursor, [session, key])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row[:-1])
        for index, (column, converters) in enumerate(self.converters):
            for convert in converters:
                values[index] = convert(values[index], column, connection)
        split = len(self.user_fields)
        user = User.from_db(connection.alias, [f.attname for f in self.user_fields], values[:split])
        patient = None
        if values[split] is not None:  # the patient's primary key: a LEFT JOIN found one
            patient = Patient.from_db(connection.alias, [f.attname for f in self.patient_fields], values[split:])
            Patient._meta.get_field("user").set_cached_value(patient, user)
        User._meta.get_field("patient").set_cached_value(user, patient)
        return user, bool(row[-1])


@cache
def _query() -> _UserQuery:
    return _UserQuery()


def token_user(*, user_id: Any, session: str) -> tuple[User, bool] | None:
    """The active-or-not user named by a token, with ``user.patient`` loaded, and whether
    ``session`` (the token's refresh token id) was signed out; None if there is no such user."""
    return _query().fetch(user_id=user_id, session=session)
