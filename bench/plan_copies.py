"""Plans for a million patients in minutes: plan each distinct story once, copy it to its twins.

``bench/load.py`` makes every patient a copy of one of ``--stories`` stories: same facts, same
dates, their own ids, care team and push device. Twins have the same plan up to those ids, so the
plan phase groups patients by a signature of their facts (computed in SQL, ids left out), plans
one patient of each group with the production code (``load._plan_chunk``) and writes the rows of
the others from that patient's rows as ``str.format`` templates (the facts loader's method), with
their own ids: plan item and escalation ids, course ids inside item keys, device, staff, and the
outbox idempotency keys recomputed with ``notifications.policy.idempotency_key``.

The signature covers every fact column the rules can read (ids, foreign keys and timestamps
of writing excepted), consent, contact, language, time zone and active devices. Whatever it
missed would show in ``bench_replan``: re-planning loaded patients with the production path
must write nothing, and the benchmark reports the writes it saw.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

PATIENT_COLUMNS = (
    "birth_date",
    "sex",
    "language",
    "timezone",
    "email <> ''",
    "consent_email",
    "consent_push",
    "consent_sms",
    "weight_kg",
    "dialysis",
    "risk_factors",
    "predispositions",
)
MARK = "\x01"  # a placeholder inside a text column (escaped braces would not format)


def _ph(name: str) -> str:
    """A ``str.format`` placeholder."""
    return "{" + name + "}"


def _fact_columns(model: Any) -> list[str]:
    """Columns the rules may read: not ids, foreign keys or the time a row was written."""
    return [
        f.column
        for f in model._meta.concrete_fields
        if not (
            f.primary_key
            or f.is_relation
            or f.name == "public_id"
            or getattr(f, "auto_now", False)
            or getattr(f, "auto_now_add", False)
        )
    ]


def story_groups() -> list[list[int]]:
    """Patients without a plan, grouped by the signature of their facts (lowest id first)."""
    from django.db import connection

    from notifications.models import Device
    from patients.models import Comedication, DentalEvent, DoseRecord, LabResult, Patient, TreatmentCourse

    parts = []
    joins = []
    for n, model in enumerate((TreatmentCourse, DoseRecord, LabResult, DentalEvent, Comedication)):
        columns = ", ".join(f'"{c}"' for c in _fact_columns(model))
        joins.append(
            f"LEFT JOIN (SELECT patient_id, count(*) || ':' || sum(hashtext(row({columns})::text)::bigint) AS sig "
            f"FROM {model._meta.db_table} GROUP BY patient_id) f{n} ON f{n}.patient_id = p.id"
        )
        parts.append(f"coalesce(f{n}.sig, '-')")
    joins.append(
        f"LEFT JOIN (SELECT patient_id, count(*) || ':' || string_agg(channel, ',' ORDER BY id) AS sig "
        f"FROM {Device._meta.db_table} WHERE active AND patient_id IS NOT NULL GROUP BY patient_id) dv "
        "ON dv.patient_id = p.id"
    )
    parts.append("coalesce(dv.sig, '-')")
    patient = f"row({', '.join(PATIENT_COLUMNS)})::text"
    sql = (
        f"SELECT md5(concat_ws('|', {patient}, {', '.join(parts)})) AS signature, "
        f"array_agg(p.id ORDER BY p.id) FROM {Patient._meta.db_table} p {' '.join(joins)} "
        "WHERE NOT EXISTS (SELECT 1 FROM scheduling_planitem i WHERE i.patient_id = p.id) "
        "GROUP BY 1 ORDER BY min(p.id)"
    )
    with connection.cursor() as cursor:
        cursor.execute("SET work_mem = '512MB'")
        cursor.execute(sql)
        return [list(ids) for _signature, ids in cursor.fetchall()]


def group_tasks(groups: list[list[int]], *, chunk: int) -> list[list[list[int]]]:
    """Whole groups packed into tasks of about ``chunk`` patients."""
    tasks: list[list[list[int]]] = []
    current: list[list[int]] = []
    size = 0
    for group in groups:
        if size + len(group) > chunk and current:
            tasks.append(current)
            current, size = [], 0
        current.append(group)
        size += len(group)
    if current:
        tasks.append(current)
    return tasks


class _Templates:
    """One planned patient's rows as COPY templates over the ids its twins get."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]], *, courses: list[int], devices: list[int]) -> None:
        from notifications.models import OutboxMessage
        from scheduling.models import Escalation, PlanItem

        from .load import CopyTable

        self.course_token = {str(c): f"c{n}" for n, c in enumerate(courses)}
        self.device_slot = {d: f"d{n}" for n, d in enumerate(devices)}
        item_slot = {item["id"]: f"i{n}" for n, item in enumerate(rows["items"])}
        # The fingerprint covers course_id: an item of a course gets the twin's own.
        self.fingerprints: list[tuple[str, dict[str, Any], str]] = []
        items = []
        for item in rows["items"]:
            row = dict(item, id=_ph(item_slot[item["id"]]), patient_id="{p}", key=self._key(item))
            if item["course_id"] is not None:
                token = self.course_token[str(item["course_id"])]
                row["course_id"] = _ph(token)
                row["fingerprint"] = _ph(f"f{len(self.fingerprints)}")
                self.fingerprints.append((f"f{len(self.fingerprints)}", item, token))
            items.append(row)
        self.items = CopyTable(PlanItem, with_id=True).template(items).replace(MARK + "[", "{").replace("]" + MARK, "}")
        self.item_count = len(items)
        esc_slot = {esc["id"]: f"e{n}" for n, esc in enumerate(rows["escalations"])}
        escalations = [
            dict(
                esc,
                id=_ph(esc_slot[esc["id"]]),
                patient_id="{p}",
                plan_item_id=_ph(item_slot[esc["plan_item_id"]]),
            )
            for esc in rows["escalations"]
        ]
        self.escalations = CopyTable(Escalation, with_id=True).template(escalations)
        self.escalation_count = len(escalations)
        item_key = {item["id"]: self._key(item, mark=False) for item in rows["items"]}
        self.outbox_keys: list[tuple[str, ...]] = []
        outbox = []
        for n, msg in enumerate(rows["outbox"]):
            row = dict(msg, key=f"{MARK}[k{n}]{MARK}", patient_id="{p}")
            if msg["plan_item_id"] is not None:
                row["plan_item_id"] = _ph(item_slot[msg["plan_item_id"]])
            if msg["escalation_id"] is not None:
                row["escalation_id"] = _ph(esc_slot[msg["escalation_id"]])
            if msg["device_id"] is not None:
                row["device_id"] = _ph(self.device_slot[msg["device_id"]])
            if msg["recipient_user_id"] is not None:
                row["recipient_user_id"] = _ph(f"u{msg['recipient_user_id']}")
            outbox.append(row)
            # What the key is made of (notifications.services._desired): slots stand for the ids.
            if msg["device_id"] is not None:
                ref = ("device", self.device_slot[msg["device_id"]])
            elif msg["recipient_user_id"] is not None:
                ref = ("user", f"u{msg['recipient_user_id']}")
            else:
                ref = ("patient", "p")
            if msg["kind"] == "reminder":
                key = item_key[msg["plan_item_id"]]
                self.outbox_keys.append(
                    ("reminder", key, str(msg["item_version"]), str(msg["offset_days"]), msg["channel"], *ref)
                )
            else:
                slot = esc_slot[msg["escalation_id"]]
                self.outbox_keys.append(("escalation", slot, str(msg["repeat"]), msg["channel"], *ref))
        self.outbox = CopyTable(OutboxMessage, with_id=False).template(outbox)
        self.outbox = self.outbox.replace(MARK + "[", "{").replace("]" + MARK, "}")
        self.flags = rows["flags"]

    def _key(self, item: dict[str, Any], *, mark: bool = True) -> str:
        """The item's key with its course id as a placeholder (``injection:<course>:<n>``)."""
        parts = item["key"].split(":")
        if item["course_id"] is not None and len(parts) >= 2 and parts[1] == str(item["course_id"]):
            token = self.course_token[parts[1]]
            parts[1] = f"{MARK}[{token}]{MARK}" if mark else _ph(token)
        return ":".join(parts)


JSON_COLUMNS = {
    "items": frozenset({"escalation", "blocked_by", "flags"}),
    "escalations": frozenset({"notify"}),
    "outbox": frozenset({"context"}),
}
SNAPSHOTS = {
    "items": ("scheduling_planitem", "bench_first_items"),
    "escalations": ("scheduling_escalation", "bench_first_escalations"),
    "outbox": ("notifications_outboxmessage", "bench_first_outbox"),
}


def snapshot_firsts(firsts: list[int]) -> None:
    """Copy the planned firsts' rows aside (indexed by patient), before the big tables lose their
    indexes for the copies."""
    from django.db import connection

    from scheduling.models import PlanState

    with connection.cursor() as cursor:
        for table, snapshot in SNAPSHOTS.values():
            cursor.execute(f"DROP TABLE IF EXISTS {snapshot}")
            cursor.execute(
                f"CREATE UNLOGGED TABLE {snapshot} AS SELECT * FROM {table} WHERE patient_id = ANY(%s)", [firsts]
            )
            cursor.execute(f"CREATE INDEX ON {snapshot} (patient_id)")
        cursor.execute("DROP TABLE IF EXISTS bench_first_states")
        cursor.execute(
            f"CREATE UNLOGGED TABLE bench_first_states AS SELECT * FROM {PlanState._meta.db_table} "
            "WHERE patient_id = ANY(%s)",
            [firsts],
        )
        cursor.execute("CREATE INDEX ON bench_first_states (patient_id)")


def snapshots_drop() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for _table, snapshot in SNAPSHOTS.values():
            cursor.execute(f"DROP TABLE IF EXISTS {snapshot}")
        cursor.execute("DROP TABLE IF EXISTS bench_first_states")


def _firsts_rows(cursor: Any, firsts: list[int]) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """The firsts' stored rows, as dicts by column, per patient."""
    out: dict[int, dict[str, list[dict[str, Any]]]] = {
        pid: {"items": [], "escalations": [], "outbox": [], "flags": []} for pid in firsts
    }
    for name, (_table, snapshot) in SNAPSHOTS.items():
        cursor.execute(f"SELECT * FROM {snapshot} WHERE patient_id = ANY(%s) ORDER BY id", [firsts])
        columns = [c.name for c in cursor.description]
        decode = [c in JSON_COLUMNS[name] for c in columns]  # Django leaves json as text to its fields
        for values in cursor.fetchall():
            row = {
                c: json.loads(v) if d and isinstance(v, str) else v
                for c, v, d in zip(columns, values, decode, strict=True)
            }
            out[row["patient_id"]][name].append(row)
    cursor.execute("SELECT patient_id, flags FROM bench_first_states WHERE patient_id = ANY(%s)", [firsts])
    for pid, flags in cursor.fetchall():
        out[pid]["flags"] = json.loads(flags) if isinstance(flags, str) else flags
    return out


def _copy_groups(groups: list[list[int]]) -> dict[str, int]:
    """Write the plan of every twin from the first patient of its group (planned beforehand)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from notifications import policy
    from notifications.models import Device, OutboxMessage
    from patients.models import Patient, StaffMembership, TreatmentCourse
    from scheduling.models import Escalation, PlanItem, PlanState
    from scheduling.services import fingerprint

    from .load import CopyTable, _reserve

    started = time.perf_counter()
    moment = timezone.now()
    counts: Counter[str] = Counter()
    with transaction.atomic(), connection.cursor() as wrapper:
        cursor = wrapper.cursor
        cursor.execute("SET LOCAL synchronous_commit = off")
        firsts = [group[0] for group in groups]
        written = _firsts_rows(cursor, firsts)
        everyone = [pid for group in groups for pid in group]
        courses: dict[int, list[int]] = defaultdict(list)
        for pid, cid in (
            TreatmentCourse.objects.filter(patient_id__in=everyone)
            .order_by("patient_id", "pk")
            .values_list("patient_id", "pk")
        ):
            courses[pid].append(cid)
        devices: dict[int, list[int]] = defaultdict(list)
        for pid, did in (
            Device.objects.filter(patient_id__in=everyone, active=True)
            .order_by("patient_id", "pk")
            .values_list("patient_id", "pk")
        ):
            devices[pid].append(did)
        team_of = dict(Patient.objects.filter(pk__in=everyone).values_list("pk", "care_team_id"))
        staff: dict[tuple[int, str], list[int]] = defaultdict(list)
        role_of: dict[tuple[int, int], tuple[str, int]] = {}
        for team, role, user in (
            StaffMembership.objects.filter(care_team_id__in=set(team_of.values()))
            .order_by("pk")
            .values_list("care_team_id", "role", "user_id")
        ):
            role_of[(team, user)] = (role, len(staff[(team, role)]))
            staff[(team, role)].append(user)
        texts: dict[str, list[str]] = defaultdict(list)
        states = []
        for group in groups:
            first, twins = group[0], group[1:]
            if not twins:
                continue
            tpl = _Templates(written[first], courses=courses[first], devices=devices[first])
            users = {u for msg in written[first]["outbox"] if (u := msg["recipient_user_id"]) is not None}
            item_ids = iter(_reserve(cursor, PlanItem._meta.db_table, tpl.item_count * len(twins)))
            esc_ids = iter(_reserve(cursor, Escalation._meta.db_table, tpl.escalation_count * len(twins)))
            for pid in twins:
                ids: dict[str, Any] = {"p": pid}
                ids.update({f"c{n}": cid for n, cid in enumerate(courses[pid])})
                ids.update({f"d{n}": did for n, did in enumerate(devices[pid])})
                ids.update({f"i{n}": next(item_ids) for n in range(tpl.item_count)})
                ids.update({f"e{n}": next(esc_ids) for n in range(tpl.escalation_count)})
                for slot, item, token in tpl.fingerprints:
                    ids[slot] = fingerprint({**item, "course_id": ids[token]})
                for user in users:  # the same role, in the twin's own care team
                    role, index = role_of[(team_of[first], user)]
                    ids[f"u{user}"] = staff[(team_of[pid], role)][index]
                for n, parts in enumerate(tpl.outbox_keys):
                    if parts[0] == "reminder":
                        _kind, key, version, offset, channel, ref, slot = parts
                        ids[f"k{n}"] = policy.idempotency_key(
                            "reminder", pid, key.format(**ids), version, offset, channel, f"{ref}:{ids[slot]}"
                        )
                    else:
                        _kind, esc, repeat, channel, ref, slot = parts
                        ids[f"k{n}"] = policy.idempotency_key(
                            "escalation", ids[esc], repeat, channel, f"{ref}:{ids[slot]}"
                        )
                texts["items"].append(tpl.items.format(**ids))
                texts["escalations"].append(tpl.escalations.format(**ids))
                texts["outbox"].append(tpl.outbox.format(**ids))
                states.append({"patient_id": pid, "flags": tpl.flags, "revision": uuid.uuid4(), "updated_at": moment})
                counts["planned"] += 1
                counts["plan_items"] += tpl.item_count
                counts["escalations"] += tpl.escalation_count
                counts["outbox"] += len(tpl.outbox_keys)
        for name, model, with_id in (
            ("items", PlanItem, True),
            ("escalations", Escalation, True),
            ("outbox", OutboxMessage, False),
        ):
            with cursor.copy(CopyTable(model, with_id=with_id).sql) as copy:
                for start in range(0, len(texts[name]), 500):
                    copy.write("".join(texts[name][start : start + 500]))
        CopyTable(PlanState, with_id=True).copy(cursor, states)
    counts["copied"] = counts["planned"]
    counts["copy_ms"] = int((time.perf_counter() - started) * 1000)
    return dict(counts)
