"""A plan's digest: 64 bits that change when anything a sync stores of the plan changes.

``scheduling.services.plan_digest`` stores it on the plan state; a re-plan whose digest is the
stored one writes nothing (the nightly pass, a rules deploy). It lives with the rules so that it
is compiled with them (``_native``): built for every patient of every re-plan, its loops cost
~0.06 ms a plan as plain Python, a sixth of an unchanged re-plan (docs/benchmarks.md).

Every field of the items and flags goes in but the items' ``days_late``, which moves every day
on every late item and is not stored (readers count it: ``items.days_late_on``). The field
lists below name them one by one (attribute reads, native when compiled); ``ITEM_FIELDS`` and
``FLAG_FIELDS`` say which, and ``scheduling.services`` checks at import that they are every
field of ``PlanItem`` and ``Flag``, so a field added to either cannot be left out silently.
"""

from __future__ import annotations

import hashlib
import marshal

from .flags import Flag
from .items import Plan, PlanItem

__all__ = ["FLAG_FIELDS", "ITEM_FIELDS", "plan_digest"]

# The fields of PlanItem that ``plan_digest`` reads, in the order it reads them.
ITEM_FIELDS = (
    "key",
    "kind",
    "protocol",
    "course_key",
    "ordinal",
    "dose_mg",
    "product",
    "phase",
    "status",
    "level",
    "rule",
    "blocked_by",
    "severity",
    "notify",
    "notification_offsets",
    "due",
    "window_start",
    "window_end",
    "reminder",
    "escalation",
    "until",
)
FLAG_FIELDS = ("code", "rule", "severity", "blocks", "override_allowed", "params", "subject")


def _plain(i: PlanItem) -> tuple[object, ...]:
    return (
        i.key,
        i.kind,
        i.protocol,
        i.course_key,
        i.ordinal,
        i.dose_mg,
        i.product,
        i.phase,
        i.status,
        i.level,
        i.rule,
        i.blocked_by,
        i.severity,
        i.notify,
        i.notification_offsets,
    )


def _flag(f: Flag) -> tuple[object, ...]:
    return (f.code, f.rule, f.severity, f.blocks, f.override_allowed, f.params, f.subject)


def plan_digest(plan: Plan, salt: str) -> int:
    """A signed 64-bit digest of everything ``plan`` stores, and of ``salt`` (what else decides
    how a plan is stored: the rules' configuration, the source that writes the rows).

    The values are serialised with ``marshal`` format 0 (no references, no interning marks: equal
    values give equal bytes in every process, unlike ``hash`` of a str), dates as day numbers;
    the rules sort items and flags. The same bytes compiled or not (tests/scheduling/
    test_rules_native.py compares them).
    """
    plain: list[tuple[object, ...]] = []
    dates: list[int] = []
    rungs: list[int] = []
    ladder: list[tuple[str, int]] = []
    until: list[int | None] = []
    for i in plan.items:
        plain.append(_plain(i))
        dates.append(i.due.toordinal())
        dates.append(i.window_start.toordinal())
        dates.append(i.window_end.toordinal())
        dates.append(i.reminder.toordinal())
        rungs.append(len(i.escalation))
        for level, day in i.escalation.items():
            ladder.append((level, day.toordinal()))
        u = i.until
        until.append(None if u is None else u.toordinal())
    flags = [_flag(f) for f in plan.flags]
    raw = marshal.dumps((salt, plain, dates, rungs, ladder, until, flags), 0)
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big", signed=True)
