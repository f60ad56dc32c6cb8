"""``carnet_isoformat_json(instant, zone)``: an instant as the JSON string DRF writes (quotes included).

The booklet's statement (``patients.serializers``) used ``to_json(carnet_isoformat(…))``. That
spent a sixth of the statement on instants: ``carnet_isoformat`` names ``zone`` up to seven times
per instant once PostgreSQL inlines it (``AT TIME ZONE`` with a zone name looks the name up each
time: ``carnet_utc_offset`` twice in each ``CASE`` branch), and ``to_json`` looks up the type of
its argument on every call. This one looks the zone up twice, takes the UTC instant with an
interval (``AT TIME ZONE interval '0'``: arithmetic, no lookup) and writes the quotes itself (the
text has nothing to escape). A NULL instant gives NULL.

The offset is ``to_char`` of the interval, repaired: ``-03:30`` comes out of ``to_char`` as
``-03:-30`` and ``-00:30`` as ``00:-30`` (``carnet_isoformat`` writes the first wrong; Python,
so DRF, writes ``-03:30`` and ``-00:30``). Offsets with seconds (local mean time, before about
1900) lose them, as in ``carnet_isoformat``.

An inlinable SQL function (one ``SELECT``, no ``FROM``, arguments used as plain columns): no call
overhead. PostgreSQL only. ``carnet_isoformat`` stays for other callers.
"""

from typing import Any

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION carnet_isoformat_json(ts timestamptz, zone text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT '"' || replace(to_char(ts AT TIME ZONE zone, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '.000000', '')
    || replace(replace(replace(replace(
        '+' || to_char((ts AT TIME ZONE zone) - (ts AT TIME ZONE interval '0'), 'HH24:MI'),
        '+-', '-'), '+00:-', '-00:'), ':-', ':'), '+00:00', 'Z')
    || '"'
$$;
"""
DROP = "DROP FUNCTION IF EXISTS carnet_isoformat_json(timestamptz, text);"


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("patients", "0003_booklet_revision")]

    operations = [migrations.RunPython(create, drop)]
