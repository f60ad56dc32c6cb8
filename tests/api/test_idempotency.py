"""``Idempotency-Key``: a retried POST returns the first response and creates nothing new."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from tests.api.conftest import World


def dose_body(world: World, **extra: Any) -> dict[str, Any]:
    body = {
        "course": str(world.course_a.public_id),
        "product": "denosumab",
        "dose_value": "60",
        "dose_unit": "mg",
        "route": "SC",
        "given_at": (timezone.now() - timedelta(minutes=30)).isoformat(),
        "injection_site": "thigh_left",
        "lot_number": "LOT-77B",
        "override_reason": "overdue; calcium checked",
    }
    body.update(extra)
    return body


def post_dose(world: World, body: dict[str, Any], key: str | None, role: str = "nurse1") -> Any:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return world.client(role).post(
        f"/api/v1/patients/{world.patient_a.public_id}/doses", body, format="json", HTTP_ACCEPT_LANGUAGE="en", **headers
    )


def test_a_retried_dose_is_still_one_dose(world: World) -> None:
    from patients.models import DoseRecord

    before = DoseRecord.objects.count()
    body = dose_body(world)
    first = post_dose(world, body, "phone-retry-1")
    assert first.status_code == 201, first.content
    again = post_dose(world, body, "phone-retry-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert DoseRecord.objects.count() == before + 1


def test_same_key_with_another_body_is_422_and_stores_nothing(world: World) -> None:
    from patients.models import DoseRecord

    body = dose_body(world)
    assert post_dose(world, body, "k-1").status_code == 201
    count = DoseRecord.objects.count()
    other = post_dose(world, {**body, "lot_number": "LOT-OTHER"}, "k-1")
    assert other.status_code == 422
    assert other.json()["field"] == "Idempotency-Key"
    assert DoseRecord.objects.count() == count


def test_keys_belong_to_one_user(world: World) -> None:
    """Another user's identical key is another request (and here, another patient's scope)."""
    from idempotency.models import IdempotencyRecord

    assert post_dose(world, dose_body(world), "shared-key").status_code == 201
    stranger = post_dose(world, dose_body(world), "shared-key", role="nurse2")
    assert stranger.status_code == 404
    assert IdempotencyRecord.objects.filter(key="shared-key").count() == 1


def test_an_error_is_not_stored_so_a_fixed_retry_runs(world: World) -> None:
    from patients.models import DoseRecord

    bad = post_dose(world, dose_body(world, dose_unit="IU"), "k-2")
    assert bad.status_code == 400
    count = DoseRecord.objects.count()
    assert post_dose(world, dose_body(world, dose_unit="IU"), "k-2").status_code == 400
    fixed = post_dose(world, dose_body(world), "k-2")
    assert fixed.status_code == 201
    assert DoseRecord.objects.count() == count + 1


def test_without_a_key_a_second_identical_dose_is_refused_by_the_booklet(world: World) -> None:
    body = dose_body(world)
    assert post_dose(world, body, None).status_code == 201
    second = post_dose(world, body, None)
    assert second.status_code == 400 and second.json()["field"] == "given_at"


def test_every_post_honours_idempotency_key() -> None:
    from backend.api_urls import urlpatterns

    exempt = {
        "api-token",
        "api-token-refresh",
        "api-session-login",
        "api-session-logout",
        "api-logout",
        "api-sign-out-everywhere",
        "plan-preview",
    }  # anonymous, or repeat-safe by nature
    for pattern in urlpatterns:
        view = pattern.callback.view_class  # type: ignore[union-attr]
        if hasattr(view, "post") and pattern.name not in exempt:
            assert getattr(view.post, "idempotent", False), f"POST /{pattern.pattern} ignores Idempotency-Key"


def test_too_long_a_key_is_refused(world: World) -> None:
    response = post_dose(world, dose_body(world), "k" * 300)
    assert response.status_code == 400 and response.json()["field"] == "Idempotency-Key"


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_concurrent_duplicates_create_one_dose(settings: Any) -> None:
    """Two racing requests with one key: the unique constraint serialises them; one dose."""
    from tests.api.conftest import build_world

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    world = build_world()
    from patients.models import DoseRecord

    before = DoseRecord.objects.count()
    body = dose_body(world)
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def send() -> None:
        try:
            barrier.wait()
            results.append(post_dose(world, body, "race-1"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [201, 201]
    assert results[0].json() == results[1].json()
    assert DoseRecord.objects.count() == before + 1
