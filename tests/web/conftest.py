from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.web.scenario import Clinic, build_clinic


@pytest.fixture
def clinic(db: Any) -> Clinic:
    return build_clinic()


@pytest.fixture
def nurse_client(clinic: Clinic) -> Client:
    client = Client()
    client.force_login(clinic.nurse)
    return client


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    """PBKDF2 costs seconds per user on a test machine; these tests are about pages, not hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
