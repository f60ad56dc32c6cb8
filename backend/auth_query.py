"""The user behind a bearer token, read in one query whose SQL is built once per process.

Every API request authenticates. With the ORM, building the query (user, their patient record,
and whether the token's session was signed out) costs more CPU than PostgreSQL spends running
it; here the SQL is built once from the models' metadata (and prepared once per connection on
PostgreSQL, ``backend.prepared``; as the request's first query it stands in for Django's
connection health check, ``backend.prepared.first_query``), and each row goes through the same database converters and
``Model.from_db`` the ORM uses, with the patient cached on the user as ``select_related("patient")``
would. The patient's plan revision comes along (the ETag of ``GET /me/plan``, the most polled
read). ``tests/api/test_auth.py`` and the permission matrix cover it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import Token

from backend.prepared import Prepared, first_query
from patients.models import Patient, User
from scheduling.models import PlanState

# Where the patient's plan revision read with the token's user is kept (on that request's
# Patient instance): the plan's ETag, so a plan 304 costs no query after auth.
_PLAN_REVISION = "_plan_revision_at_auth"


@dataclass(frozen=True)
class AtAuth:
    """One more value read with the token's user, for one endpoint (``GET /me/booklet``: the
    booklet's revision): ``sql`` is an expression over the patient's row (alias ``p``), as text,
    for the database ``vendor`` only (elsewhere it is not read: ``read_at_auth`` gives None)."""

    name: str
    sql: str
    vendor: str = "postgresql"


class _UserQuery:
    def __init__(self, extra: AtAuth | None = None) -> None:
        self.extra = extra
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
        state_patient: Any = PlanState._meta.get_field("patient")
        state_revision: Any = PlanState._meta.get_field("revision")
        extra_sql = f", ({extra.sql})::text" if extra is not None else ""
        # Table and column names come from the models' metadata only (and ``extra``, from the code).
        self.sql = (
            f"SELECT {', '.join(columns)}, s.{quote(str(state_revision.column))}{extra_sql}, {revoked}"  # noqa: S608
            f" FROM {quote(User._meta.db_table)} u"
            f" LEFT OUTER JOIN {quote(Patient._meta.db_table)} p ON p.{patient_user} = u.{quote('id')}"
            f" LEFT OUTER JOIN {quote(PlanState._meta.db_table)} s"
            f" ON s.{quote(str(state_patient.column))} = p.{quote('id')}"
            f" WHERE u.{quote(str(id_field.column))} = %s"
        )
        name = "carnet_token_user" + (f"_{extra.name}" if extra is not None else "")
        self.statement = Prepared(name, self.sql, ("text", str(id_field.db_type(connection))))
        converters = [self._converters(field, "u") for field in self.user_fields] + [
            self._converters(field, "p") for field in self.patient_fields
        ]
        # Only the columns that have converters (most have none), as (index, column, converters).
        self.converters = [(index, column, found) for index, (column, found) in enumerate(converters) if found]
        self.user_attnames = [f.attname for f in self.user_fields]
        self.patient_attnames = [f.attname for f in self.patient_fields]

    def _row(self, session: str, key: Any) -> Any:
        return self.statement.fetchone([session, key])

    @staticmethod
    def _converters(field: Any, alias: str) -> tuple[Any, list[Any]]:
        column = field.get_col(alias)
        return column, connection.ops.get_db_converters(column) + field.get_db_converters(connection)

    def fetch(self, *, user_id: Any, session: str) -> tuple[User, bool] | None:
        db = connections[DEFAULT_DB_ALIAS]  # once: each use of the ``connection`` proxy looks it up
        key = self.id_field.get_db_prep_value(self.id_field.to_python(user_id), db)
        row = first_query(lambda: self._row(session, key))  # the request's first query: no health check
        if row is None:
            return None
        tail = 3 if self.extra is not None else 2  # plan revision, [extra], signed out
        values = list(row[:-tail])
        for index, column, converters in self.converters:
            for convert in converters:
                values[index] = convert(values[index], column, db)
        split = len(self.user_fields)
        user = User.from_db(db.alias, self.user_attnames, values[:split])
        patient = None
        if values[split] is not None:  # the patient's primary key: a LEFT JOIN found one
            patient = Patient.from_db(db.alias, self.patient_attnames, values[split:])
            Patient._meta.get_field("user").set_cached_value(patient, user)
            revision = row[-tail]
            if revision is not None:
                setattr(patient, _PLAN_REVISION, revision if isinstance(revision, uuid.UUID) else uuid.UUID(revision))
            if self.extra is not None:
                setattr(patient, _AT_AUTH + self.extra.name, row[-2])
        User._meta.get_field("patient").set_cached_value(user, patient)
        return user, bool(row[-1])


_AT_AUTH = "_at_auth_"


@cache
def _query(extra: AtAuth | None = None) -> _UserQuery:
    return _UserQuery(extra)


def plan_revision_at_auth(patient: Patient) -> uuid.UUID | None:
    """The plan revision of ``patient`` read with the token's user in this request, if it was."""
    revision: uuid.UUID | None = getattr(patient, _PLAN_REVISION, None)
    return revision


def read_at_auth(patient: Patient, extra: AtAuth) -> str | None:
    """``extra`` as read with the token's user in this request, if it was."""
    value: str | None = getattr(patient, _AT_AUTH + extra.name, None)
    return value


def token_user(*, user_id: Any, session: str, extra: AtAuth | None = None) -> tuple[User, bool] | None:
    """The active-or-not user named by a token, with ``user.patient`` loaded, and whether
    ``session`` (the token's refresh token id) was signed out; None if there is no such user.
    With ``extra``, that value is read in the same statement (``read_at_auth``)."""
    if extra is not None and extra.vendor != connection.vendor:
        extra = None
    return _query(extra).fetch(user_id=user_id, session=session)


# --- the token itself -------------------------------------------------------------------------
#
# Decoding a JWT (base64, JSON, HMAC, claim checks in PyJWT and simplejwt) costs about as much
# CPU as the auth query. An app polls with the same access token for its whole lifetime, so this
# process keeps the tokens it validated, by their exact bytes, until they expire: a token is
# immutable and its signature cannot change. What can change is checked on every request all the
# same: expiry (here, against the clock) and whether its session was signed out or the user
# deactivated (the auth query).

_TOKENS_KEPT = 4096
_tokens: OrderedDict[bytes, tuple[Token, float]] = OrderedDict()
_tokens_lock = threading.Lock()


def validated_token(raw: bytes, validate: Callable[[bytes], Token]) -> Token:
    """``validate(raw)`` (simplejwt's decoding and checks), or the token it gave for these bytes
    earlier in this process if it has not expired since."""
    with _tokens_lock:
        kept = _tokens.get(raw)
        if kept is not None:
            _tokens.move_to_end(raw)
    if kept is not None:
        token, deadline = kept
        if time.time() < deadline:
            return token
        with _tokens_lock:
            _tokens.pop(raw, None)
    token = validate(raw)  # raises InvalidToken for a bad or expired token: nothing kept
    leeway = token.get_token_backend().get_leeway().total_seconds()
    deadline = float(token.payload["exp"]) + leeway  # simplejwt: expired once exp <= now - leeway
    with _tokens_lock:
        _tokens[raw] = (token, deadline)
        if len(_tokens) > _TOKENS_KEPT:
            _tokens.popitem(last=False)
    return token
