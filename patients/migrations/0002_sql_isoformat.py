"""``carnet_isoformat(instant, zone)``: an instant as DRF renders it (Python's isoformat in ``zone``).

PostgreSQL renders the booklet's JSON (``patients.serializers.booklet_json``); this keeps its SQL
short and the same for every instant. An inlinable SQL function: no call overhead. PostgreSQL only.
"""

from typing import Any

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION carnet_utc_offset(ts timestamptz, zone text) RETURNS interval
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT (ts AT TIME ZONE zone) - (ts AT TIME ZONE 'UTC') $$;

CREATE OR REPLACE FUNCTION carnet_isoformat(ts timestamptz, zone text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT replace(to_char(ts AT TIME ZONE zone, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '.000000', '')
    || CASE
        WHEN carnet_utc_offset(ts, zone) = interval '0' THEN 'Z'
        WHEN carnet_utc_offset(ts, zone) < interval '0' THEN to_char(carnet_utc_offset(ts, zone), 'HH24:MI')
        ELSE '+' || to_char(carnet_utc_offset(ts, zone), 'HH24:MI')
    END
$$;
"""
DROP = """
DROP FUNCTION IF EXISTS carnet_isoformat(timestamptz, text);
DROP FUNCTION IF EXISTS carnet_utc_offset(timestamptz, text);
"""


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("patients", "0001_initial")]

    operations = [migrations.RunPython(create, drop)]
