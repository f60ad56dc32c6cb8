"""Worklist outcomes in the admin: visible to their team only, read-only, with who recorded them."""

from __future__ import annotations

import pytest
from django.test import Client

from scheduling.models import PlanItem
from tests.web.scenario import Clinic
from web.services import worklist_outcome_record

pytestmark = pytest.mark.django_db


def test_outcomes_are_listed_for_the_team_only_and_read_only(clinic: Clinic) -> None:
    item = PlanItem.objects.get(patient=clinic.late, kind="injection", status="overdue_L3")
    mine = worklist_outcome_record(plan_item=item, outcome="called", by=clinic.nurse, note="messagerie")
    other_item = PlanItem.objects.filter(patient=clinic.other_patient, kind="injection").first()
    assert other_item is not None
    theirs = worklist_outcome_record(plan_item=other_item, outcome="called", by=clinic.other_nurse)
    clinic.nurse.is_staff = True
    clinic.nurse.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(clinic.nurse)
    listing = client.get("/admin/web/worklistoutcome/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "MARTIN" in page and "LEROY" not in page
    assert client.get(f"/admin/web/worklistoutcome/{theirs.pk}/change/").status_code in (302, 403, 404)
    history = client.get(f"/admin/web/worklistoutcome/{mine.pk}/history/")
    assert history.status_code == 200 and "Claire Moreau" in history.content.decode()
    assert client.get("/admin/web/worklistoutcome/add/").status_code == 403
