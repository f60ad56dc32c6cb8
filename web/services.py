"""Writes of the nurse pages that no other app owns: a worklist outcome (audited)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from backend.errors import CarnetError
from patients.models import User
from scheduling.models import PlanItem
from web.models import WorklistOutcome


@transaction.atomic
def worklist_outcome_record(*, plan_item: PlanItem, outcome: str, by: User, note: str = "") -> WorklistOutcome:
    """Record what was done about a worklist line; simple-history keeps who and when (audit log)."""
    if outcome not in WorklistOutcome.Outcome.values:
        raise CarnetError(f"Unknown outcome {outcome!r}.", field="outcome")
    item = PlanItem.objects.select_for_update().get(pk=plan_item.pk)
    if not item.is_open:
        raise CarnetError("This item is closed; nothing is left to do.", field="plan_item", code="closed")
    row = WorklistOutcome(
        plan_item=item, patient_id=item.patient_id, outcome=outcome, note=note.strip(), recorded_by=by
    )
    try:
        row.full_clean()
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise CarnetError(messages[0], field=None if field == "__all__" else field) from exc
    row._history_user = by  # type: ignore[attr-defined]  # read by simple-history
    row.save()
    return row
