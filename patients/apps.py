from __future__ import annotations

from django.apps import AppConfig


class PatientsConfig(AppConfig):
    name = "patients"
    verbose_name = "Patients and booklet"
    default_auto_field = "django.db.models.BigAutoField"
