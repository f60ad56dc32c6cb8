"""``patients_patient.booklet_revision``: a number that changes with every write to the patient's
booklet, kept by triggers on its five tables (PostgreSQL only).

The booklet's ETag used to be derived from its rows (count and sum of ``xmin`` over five tables,
~0.2 ms of PostgreSQL per poll at a million patients); read from the patient's row by the token's
auth query it costs nothing more, as the plan's revision does.

Statement-level ``AFTER`` triggers with transition tables: one ``UPDATE`` of the patients touched
per statement, whatever its number of rows (a ``COPY`` of a chunk of patients' doses, as
bench/load.py does, is one statement; a row-level trigger would update each patient once per
row). They see every insert, update (both patients if a row moves) and delete, by the services,
the admin, a bulk update or a raw ``COPY``; a ``TRUNCATE`` of a booklet table bumps every
patient. Only ``session_replication_role = replica`` or disabled triggers bypass them.

New values come from a sequence (``nextval`` is never rolled back), so a revision never names two
different booklets of one patient, even when a transaction that bumped it rolls back. Existing
patients start at 0: any write from now on gives a new number.

The column is not a model field on purpose: ``Patient.save()`` writes every field, and would
write back a revision read before a concurrent booklet write (the ETag would then name a stale
body). Only the triggers write it; ``patients.serializers`` reads it.
"""

from typing import Any

from django.db import migrations

BOOKLET_MODELS = ("TreatmentCourse", "DoseRecord", "LabResult", "DentalEvent", "Comedication")

FUNCTIONS = r"""
CREATE SEQUENCE IF NOT EXISTS carnet_booklet_revision_seq;
ALTER TABLE patients_patient ADD COLUMN IF NOT EXISTS booklet_revision bigint NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION carnet_booklet_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE patients_patient SET booklet_revision = nextval('carnet_booklet_revision_seq')
        WHERE id IN (SELECT patient_id FROM carnet_new_rows);
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE patients_patient SET booklet_revision = nextval('carnet_booklet_revision_seq')
        WHERE id IN (SELECT patient_id FROM carnet_old_rows);
    ELSE
        UPDATE patients_patient SET booklet_revision = nextval('carnet_booklet_revision_seq')
        WHERE id IN (SELECT patient_id FROM carnet_old_rows UNION SELECT patient_id FROM carnet_new_rows);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION carnet_booklet_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE patients_patient SET booklet_revision = nextval('carnet_booklet_revision_seq');
    RETURN NULL;
END
$$;
"""

TRIGGERS = """
CREATE TRIGGER carnet_booklet_insert AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS carnet_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION carnet_booklet_written();
CREATE TRIGGER carnet_booklet_update AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS carnet_old_rows NEW TABLE AS carnet_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION carnet_booklet_written();
CREATE TRIGGER carnet_booklet_delete AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS carnet_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION carnet_booklet_written();
CREATE TRIGGER carnet_booklet_truncate AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION carnet_booklet_truncated();
"""

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS carnet_booklet_insert ON {table};
DROP TRIGGER IF EXISTS carnet_booklet_update ON {table};
DROP TRIGGER IF EXISTS carnet_booklet_delete ON {table};
DROP TRIGGER IF EXISTS carnet_booklet_truncate ON {table};
"""

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS carnet_booklet_written();
DROP FUNCTION IF EXISTS carnet_booklet_truncated();
ALTER TABLE patients_patient DROP COLUMN IF EXISTS booklet_revision;
DROP SEQUENCE IF EXISTS carnet_booklet_revision_seq;
"""


def _tables(apps: Any) -> list[str]:
    return [str(apps.get_model("patients", name)._meta.db_table) for name in BOOKLET_MODELS]


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTIONS)
        for table in _tables(apps):
            schema_editor.execute(TRIGGERS.format(table=schema_editor.quote_name(table)))


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for table in _tables(apps):
            schema_editor.execute(DROP_TRIGGERS.format(table=schema_editor.quote_name(table)))
        schema_editor.execute(DROP_FUNCTIONS)


class Migration(migrations.Migration):
    dependencies = [("patients", "0002_sql_isoformat")]

    operations = [migrations.RunPython(create, drop)]
