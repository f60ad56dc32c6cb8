"""The care-team dashboard: adherence by month and protocol, patients at rebound risk today."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.web.scenario import Clinic, denosumab_patient

pytestmark = pytest.mark.django_db


def test_dashboard_counts_rebound_risk_and_charts_adherence(clinic: Clinic, nurse_client: Client) -> None:
    response = nurse_client.get("/dashboard/")
    assert response.status_code == 200
    # Only the patient 40 days past due is past 7 months since the last dose (OP-04 L3).
    assert response.context["rebound_count"] == 1
    denosumab_patient(clinic.team, clinic.nurse, first="Rose", last="Blanc", last_dose_days_ago=260)
    response = nurse_client.get("/dashboard/")
    assert response.context["rebound_count"] == 2
    # Every patient here had their doses six months apart: each counted dose of the last 12 months
    # was inside its ±21-day window.
    op = next(t for t in response.context["totals"] if t["protocol"] == "denosumab_op_60mg_q6m")
    assert op["inside"] == op["counted"] and op["counted"] >= 4 and op["percent"] == 100
    bars = response.context["chart"].bars
    assert bars and all(b.css.startswith("bar-0") for b in bars)
    page = response.content.decode()
    assert "patients à risque de rebond aujourd'hui" in page and "<svg viewBox=" in page
    # The other team's patient (200 days since the last dose) is not counted here.
    assert "LEROY" not in page
