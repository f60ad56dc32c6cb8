"""Reads for the planner: querysets become the rules' plain, frozen values.

``plan_inputs`` loads the facts of many patients in a fixed number of queries (one per fact
table), whatever their history length, so re-planning a batch or one patient costs the same
query count. Instants become local dates in the patient's time zone here (TIME-01).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet

from patients.models import Comedication, DentalEvent, DoseRecord, LabResult, Patient, TreatmentCourse
from scheduling.rules import facts as rf
from scheduling.rules.assemble import plan_inputs_from_rows
from scheduling.rules.config import RulesConfig

if TYPE_CHECKING:
    from scheduling.models import PlanItem

_CONFIG: RulesConfig | None = None


def rules_config() -> RulesConfig:
    """The deployment's policy values (settings.CARNET_RULES over the table's defaults)."""
    global _CONFIG
    if _CONFIG is None:
        _CONFIG = RulesConfig.from_mapping(getattr(settings, "CARNET_RULES", {}) or {})
    return _CONFIG


# The fact reads of ``plan_inputs``: (model, columns, order). On PostgreSQL they run as written
# here, one array parameter for the patients, rows fetched as plain tuples; elsewhere through
# the ORM's ``values_list`` (same columns, same Python types). Compiling a queryset with a
# 500-value IN list and iterating it row by row cost three times the database's own time.
_FACT_READS: dict[str, tuple[Any, tuple[str, ...], tuple[str, ...]]] = {
    "courses": (
        TreatmentCourse,
        ("id", "patient_id", "protocol", "start_date", "stop_date", "consolidation", "response"),
        ("start_date",),
    ),
    "doses": (DoseRecord, ("id", "patient_id", "course_id", "product", "dose_value", "given_on"), ("given_on",)),
    "labs": (
        LabResult,
        ("patient_id", "test", "value", "unit", "albumin_g_l", "drawn_on", "reference_low", "reference_high"),
        ("drawn_on", "id"),
    ),
    "dental": (DentalEvent, ("patient_id", "event", "date"), ("date",)),
    "comedications": (
        Comedication,
        ("patient_id", "name", "drug_class", "mg_per_day", "start_date", "stop_date"),
        ("start_date",),
    ),
}


def _fact_rows(name: str, ids: list[int]) -> list[tuple[Any, ...]]:
    """The unvoided rows of the fact table ``name`` of patients ``ids``, as tuples of ``_FACT_READS``."""
    model, columns, order = _FACT_READS[name]
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT {', '.join(columns)} FROM {model._meta.db_table} "  # noqa: S608  # module constants only
            f"WHERE patient_id = ANY(%s) AND voided_at IS NULL ORDER BY {', '.join(order)}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [ids])
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows
    return _orm_fact_rows(name, ids)


def _orm_fact_rows(name: str, ids: list[int]) -> list[tuple[Any, ...]]:
    """``_fact_rows`` through the ORM (SQLite; and the reference the PostgreSQL reads are tested against)."""
    model, columns, order = _FACT_READS[name]
    names = ["pk" if c == "id" else c for c in columns]
    return list(model.objects.filter(patient_id__in=ids, voided_at__isnull=True).order_by(*order).values_list(*names))


def plan_inputs(patients: Sequence[Patient], *, today_by_patient: dict[int, date]) -> dict[int, rf.PlanInput]:
    """The facts of ``patients`` as ``PlanInput`` values, in five queries whatever the history."""
    # Plain rows, not model instances (building ~30 instances per patient cost more than the
    # rules themselves), made into the rules' values by compiled code (rules.assemble).
    ids = [p.pk for p in patients]
    return plan_inputs_from_rows(
        patients,
        today_by_patient,
        rules_config(),
        _fact_rows("courses", ids),
        _fact_rows("doses", ids),
        _fact_rows("labs", ids),
        _fact_rows("dental", ids),
        _fact_rows("comedications", ids),
    )


def patients_with_open_items(*, due_on_or_before: date) -> QuerySet[PlanItem, int]:
    """Patients whose plan has an open item whose reminder, window or due date has come.

    One range of ``plan_open_next_date_idx`` (the earliest of the three dates, with the patient),
    read without the heap; the filter spells the index's expression and predicate exactly.
    """
    from scheduling.models import CLOSED_STATUSES, PlanItem, next_date

    return (
        PlanItem.objects.filter(~Q(status__in=list(CLOSED_STATUSES)))
        .alias(next_date=next_date())
        .filter(next_date__lte=due_on_or_before)
        .values_list("patient_id", flat=True)
        .distinct()
        .order_by("patient_id")
    )


# --- the escalation pass ---------------------------------------------------------------------

LADDER_LEVELS = ("L1", "L2", "L3", "L4")


# (item id, patient id, step): plain tuples, as the driver makes them; a named tuple per row
# cost ~0.5 µs, a second at a million patients.
OverdueStep = tuple[int, int, str]


def overdue_steps(*, today: date, itersize: int = 20_000) -> Iterator[OverdueStep]:
    """Every open item whose due date has passed, with its ladder step ``today``, streamed.

    The step is the highest level whose first day (the rules' dates stored on the item,
    ``PlanItem.escalation``, level → ISO date; ISO dates compare as text) has come, computed by
    the database. No heap read per late item (migration ``scheduling/0006``): the items the last
    re-plan found late (due, overdue, blocked) come from an index-only scan of the covering
    ``plan_late_ladder_idx``; those past due that the nightly pass has not moved yet (scheduled,
    reminder, window open: a day's worth) from exact ranges of ``plan_open_status_due_idx``.
    Rows are not ordered. On PostgreSQL the rows arrive as one streamed result: the connection
    runs no other statement until the iteration ends, so collect what you need before querying.
    """
    from django.db import connection, transaction
    from django.db.models import Case, CharField, Value, When
    from django.db.models.fields.json import KT
    from django.db.models.lookups import LessThanOrEqual

    from scheduling.models import EARLY_STATUSES, LATE_STATUSES, PlanItem

    iso = Value(today.isoformat(), output_field=CharField())
    step = Case(
        # The plain text comparison, not the JSON key lookup (which on SQLite parses its operand).
        *[
            When(LessThanOrEqual(KT(f"escalation__{level}"), iso), then=Value(level))
            for level in reversed(LADDER_LEVELS)
        ],
        default=Value("due"),
        output_field=CharField(),
    )

    def part(statuses: Iterable[str]) -> Any:
        return (
            PlanItem.objects.filter(status__in=list(statuses), due__lt=today)
            .annotate(step=step)
            .order_by()
            .values_list("pk", "patient_id", "step")
        )

    rows = part(LATE_STATUSES).union(part(EARLY_STATUSES), all=True)
    if connection.vendor != "postgresql":
        yield from rows.iterator(chunk_size=itersize)
        return
    # psycopg directly, rows streamed in chunks of ``itersize`` (libpq's chunked mode; ~20 %
    # faster than a server-side cursor's FETCHes): millions of rows, where the ORM's per-row
    # work would cost more than the query. JIT off for this statement (set back after it, as
    # SET LOCAL would last to the end of a caller's transaction): compiling the plan took 0.5 s
    # at a million patients, for a scan whose per-row work is one CASE.
    sql, params = rows.query.sql_with_params()
    with transaction.atomic(), connection.connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('jit')")
        jit = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('jit', 'off', true)")
        try:
            yield from cursor.stream(sql, params, size=itersize)
        finally:
            cursor.execute("SELECT set_config('jit', %s, true)", [jit])
