"""Issue 7: the nurse pages in a real browser (Debian's Chromium, headless, driven by Playwright).

A nurse logs in, finds an overdue denosumab patient at the top of the worklist, books them (outside
the due window: the page asks for a reason first), records the dose with a lot number, and sees the
worklist and the calendar update. A nurse of another care team cannot open that patient (404).
Every page is photographed at 1280 px and 768 px under ``test-artifacts/screenshots/``, and the
browser console must stay free of errors throughout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections

from patients.models import DoseRecord
from scheduling.models import Appointment, PlanItem
from tests.web.scenario import PASSWORD, build_clinic, today

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots"
WIDTHS = (1280, 768)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium"),
]

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            # While Playwright's event loop runs in this thread, asgiref keeps Django's connections
            # per context, not per thread: the test's ORM calls got a connection of their own.
            # Closed here, while that storage is current; otherwise it outlives the test and
            # holds the test database open (the PostgreSQL run's teardown warning).
            connections.close_all()
            b.close()


@pytest.fixture(autouse=True)
def _test_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Playwright's sync API keeps an event loop running in this thread; the ORM calls made here
    # between browser steps are plain synchronous code (the documented Django/Playwright setting).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


class Session:
    """One browser context: a page, its console errors, and screenshots at both widths."""

    def __init__(self, browser: Any, base_url: str, label: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.base = base_url
        self.label = label
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def shoot(self, name: str) -> None:
        """Screenshots at 1280 and 768 px wide (full page); the page is left at 1280 px."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        for width in WIDTHS:
            self.page.set_viewport_size({"width": width, "height": 900})
            self.page.screenshot(path=str(SHOTS / f"{self.label}-{name}-{width}.png"), full_page=True)
        self.page.set_viewport_size({"width": 1280, "height": 900})

    def login(self, email: str) -> None:
        self.goto("/login/")
        self.page.fill("#id_username", email)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("main form button[type=submit]")
        self.page.wait_for_url("**/worklist/")


def test_nurse_books_and_records_an_overdue_denosumab_dose(browser: Any, live_server: Any) -> None:
    clinic = build_clinic()
    late = clinic.late
    item = PlanItem.objects.get(patient=late, kind="injection", status__startswith="overdue")
    tomorrow = today() + timedelta(days=1)

    nurse = Session(browser, live_server.url, "nurse")
    page = nurse.page
    nurse.goto("/login/")
    assert page.locator("label[for=id_username]").is_visible()
    nurse.shoot("login")
    nurse.login(clinic.nurse.email)
    assert page.locator("html").get_attribute("lang") == "fr"

    # The worklist: the denosumab patient 40 days late (rebound risk) comes first.
    first = page.locator("ol.worklist > li").first
    assert "MARTIN Jeanne" in first.locator("h2").inner_text()
    assert first.locator(".st-rebound").count() == 1
    assert "L3" in first.inner_text()
    # The blocked patient shows why, and what unblocks it (CA-05: calcium in the last 30 days).
    blocked_row = page.locator(
        f"#item-{PlanItem.objects.get(patient=clinic.blocked, kind='injection', status='blocked').public_id}"
    )
    assert blocked_row.locator(".blocks .unblock").count() == 1
    nurse.shoot("worklist")

    # Keyboard: Tab from the top reaches the skip link first, and focus is visible.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"

    # Book from the worklist; the window is shown; past the window a reason is needed first.
    first.locator(f"a[href$='/calendar/book/{item.public_id}/']").click()
    page.wait_for_url(f"**/calendar/book/{item.public_id}/**")
    assert page.locator(".window-box").is_visible()
    page.fill("#pick-day", tomorrow.isoformat())
    page.click("form[method=get] button[type=submit]")
    page.wait_for_url("**day=*")
    page.locator("label.slot:not(.taken) input").first.check()
    nurse.shoot("book")
    page.click("form[method=post] button.primary")
    # Waits for the answer page (a bare is_visible() could look at the page before it: a busy
    # machine failed here once, as the preview below did in session 8).
    page.locator("#id_out_of_window_reason_error, .slots + div .errorlist, .errorlist").first.wait_for()
    assert not Appointment.objects.filter(plan_item=item).exists()
    nurse.shoot("book-needs-reason")
    page.locator("label.slot:not(.taken) input").first.check()
    page.fill("#id_out_of_window_reason", "Retard de 40 jours : rattrapage au plus tôt")
    page.click("form[method=post] button.primary")
    page.wait_for_url("**/calendar/?view=day**")
    appointment = Appointment.objects.get(plan_item=item, status=Appointment.Status.BOOKED)
    appt_link = page.locator(f"#appt-{appointment.public_id}")
    assert "MARTIN" in appt_link.inner_text()
    nurse.shoot("calendar-day")
    nurse.goto(f"/calendar/?view=week&date={tomorrow.isoformat()}")
    assert page.locator(f"#appt-{appointment.public_id}").count() == 1
    nurse.shoot("calendar-week")
    nurse.goto(f"/calendar/?view=month&date={tomorrow.isoformat()}")
    assert page.locator(f"#appt-{appointment.public_id}").count() == 1
    nurse.shoot("calendar-month")

    # The appointment page (move and cancel, with the nurse's free slots).
    nurse.goto(f"/calendar/appointments/{appointment.public_id}/")
    assert page.locator("fieldset.slots").count() == 1
    nurse.shoot("appointment")

    # The worklist shows the booking.
    nurse.goto("/worklist/")
    assert page.locator(f"#item-{item.public_id} a[href*='/calendar/appointments/']").count() == 1

    # The patient page, then record the dose with its lot number.
    page.locator(f"#item-{item.public_id} h2 a").click()
    page.wait_for_url(f"**/patients/{late.public_id}/")
    assert page.locator("figure.timeline > svg").count() == 1
    assert page.locator("figure.timeline > svg circle.tl-dose").count() >= 3
    nurse.shoot("patient")
    page.click(f"a[href$='/patients/{late.public_id}/doses/new/']")
    assert page.locator("#id_course").input_value() == str(clinic.late_course.pk)
    page.fill("#id_lot_number", "")
    page.click("main form button.primary")
    page.locator("#id_lot_number_error, .errorlist").first.wait_for()  # the answer page, as above
    assert not DoseRecord.objects.filter(patient=late, given_on=today()).exists()
    nurse.shoot("dose-needs-lot")
    page.fill("#id_lot_number", "LOT-E2E-42")
    page.select_option("#id_injection_site", "abdomen")
    page.click("main form button.primary")
    page.wait_for_url(f"**/patients/{late.public_id}/**")
    assert "LOT-E2E-42" in page.locator(".messages").inner_text()
    dose = DoseRecord.objects.get(patient=late, lot_number="LOT-E2E-42")
    assert dose.recorded_by == clinic.nurse and dose.injection_site == "abdomen"
    nurse.shoot("patient-after-dose")

    # The worklist no longer lists that injection; the calendar shows it given.
    nurse.goto("/worklist/")
    assert page.locator(f"#item-{item.public_id}").count() == 0
    assert "MARTIN Jeanne" not in page.locator("ol.worklist > li").first.locator("h2").inner_text()
    nurse.shoot("worklist-after-dose")
    nurse.goto(f"/calendar/?view=day&date={tomorrow.isoformat()}")
    assert page.locator(f"#appt-{appointment.public_id}.done .st-done").count() == 1
    nurse.shoot("calendar-after-dose")

    # The dashboard, and the course pages with their previews.
    nurse.goto("/dashboard/")
    assert page.locator(".chart svg").count() == 1
    nurse.shoot("dashboard")
    nurse.goto(f"/patients/{late.public_id}/courses/{clinic.late_course.public_id}/stop/")
    page.fill("#id_reason", "Fin du traitement")
    page.click("main form button[value=preview]")
    # The click returns once the POST's page starts loading: wait for the preview it renders
    # (a busy machine let the count run on the form page before it, see session 8's note).
    page.locator("#preview").wait_for()
    assert page.locator("#preview tr.added").count() >= 1
    nurse.shoot("course-stop-preview")
    nurse.goto(f"/patients/{late.public_id}/courses/new/")
    page.select_option("#id_protocol", "vitamin_d_50000iu")
    page.click("main form button[value=preview]")
    page.locator("#preview").wait_for()
    assert page.locator("#preview").is_visible()
    nurse.shoot("course-start-preview")

    # English too.
    page.select_option("#language-switch", "en")
    page.click("form[action$='/i18n/setlang/'] button")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    nurse.goto("/worklist/")
    assert "Overdue worklist" in page.locator("h1").inner_text()
    nurse.shoot("worklist-en")
    assert nurse.errors == [], nurse.errors

    # A nurse of another care team cannot open that patient.
    other = Session(browser, live_server.url, "other-nurse")
    other.login(clinic.other_nurse.email)
    assert "MARTIN" not in other.page.content()
    response = other.goto(f"/patients/{late.public_id}/")
    assert response is not None and response.status == 404
    response = other.goto(f"/calendar/appointments/{appointment.public_id}/")
    assert response is not None and response.status == 404
    other.shoot("other-team-404")
    # The 404 documents themselves are the only errors the console may report.
    assert [e for e in other.errors if "404" not in e] == [], other.errors
