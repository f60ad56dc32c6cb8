"""The overdue worklist, ranked by risk (nurse pages and ``GET /api/v1/worklist``).

Order: denosumab 60 mg patients past 7 months since their last dose first (the rebound-fracture
window, OP-05 / OP-04 L3 at D+29), then by days late, then by the severity of the ladder level.
One query for the items, one for their escalations, whatever the length of the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Case, IntegerField, Prefetch, Q, QuerySet, Value, When

from patients.models import CareTeam, User
from scheduling.expressions import DaysLate
from scheduling.models import Escalation, ItemStatus, PlanItem
from scheduling.rules.flags import message as flag_message
from scheduling.rules.unblock import unblock_hint

OP = "denosumab_op_60mg_q6m"
# OP-04: L3 starts at D+29, i.e. more than 7 months after the last dose.
REBOUND_DAYS_LATE = 29
WORKLIST_STATUSES = (
    ItemStatus.DUE,
    ItemStatus.BLOCKED,
    ItemStatus.OVERDUE_L1,
    ItemStatus.OVERDUE_L2,
    ItemStatus.OVERDUE_L3,
    ItemStatus.OVERDUE_L4,
)
WORKLIST_KINDS = ("injection", "consolidation")


def staff_team_ids(user: User) -> list[int]:
    if user.is_superuser:
        return list(CareTeam.objects.values_list("pk", flat=True))
    return list(user.memberships.values_list("care_team_id", flat=True))


def worklist_items(
    *, team_ids: list[int], kinds: tuple[str, ...] = WORKLIST_KINDS, now: datetime | None = None
) -> QuerySet[PlanItem]:
    """Open administration items that are due, blocked or overdue, ranked by risk; days late on
    each patient's local date at ``now`` (``DaysLate``: they are not stored)."""
    return (
        PlanItem.objects.filter(
            patient__care_team_id__in=team_ids,
            status__in=WORKLIST_STATUSES,
            kind__in=kinds,
            closed_at__isnull=True,
        )
        .select_related("patient", "patient__care_team", "course")
        .annotate(days_late_now=DaysLate(now))
        .annotate(
            rebound_risk=Case(
                When(Q(protocol=OP, kind="injection", days_late_now__gte=REBOUND_DAYS_LATE), then=Value(1)),
                When(Q(kind="consolidation", days_late_now__gte=REBOUND_DAYS_LATE), then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            ),
            level_rank=Case(
                When(level="L4", then=Value(4)),
                When(level="L3", then=Value(3)),
                When(level="L2", then=Value(2)),
                When(level="L1", then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            ),
        )
        .order_by("-rebound_risk", "-days_late_now", "-level_rank", "due", "pk")
        .prefetch_related(
            Prefetch(
                "escalations",
                queryset=Escalation.objects.select_related("acknowledged_by").order_by("level"),
            )
        )
    )


@dataclass(frozen=True)
class Block:
    code: str
    rule: str
    message: str
    unblock: str
    override_allowed: bool


def item_blocks(item: PlanItem, lang: str) -> list[Block]:
    """The item's blocking flags explained, with what lifts each one."""
    by_code = {f["code"]: f for f in item.flags if isinstance(f, dict)}
    out = []
    for code in item.blocked_by:
        flag = by_code.get(code, {})
        params = flag.get("params") or {}
        out.append(
            Block(
                code=code,
                rule=str(flag.get("rule", "")),
                message=flag_message(code, lang, params if isinstance(params, dict) else {}),
                unblock=unblock_hint(code, lang),
                override_allowed=bool(flag.get("override_allowed", False)),
            )
        )
    return out


def rebound_risk_count(*, team_ids: list[int], now: datetime | None = None) -> int:
    """Patients at rebound risk now: denosumab 60 mg more than 7 months after the last dose."""
    return (
        PlanItem.objects.filter(
            patient__care_team_id__in=team_ids,
            closed_at__isnull=True,
            kind__in=WORKLIST_KINDS,
            status__in=WORKLIST_STATUSES,
        )
        .alias(days_late_now=DaysLate(now))
        .filter(days_late_now__gte=REBOUND_DAYS_LATE)
        .filter(Q(protocol=OP, kind="injection") | Q(kind="consolidation"))
        .values("patient_id")
        .distinct()
        .count()
    )
