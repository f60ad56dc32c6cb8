from __future__ import annotations

from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Scheduling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Fail at start, naming the key, if settings.CARNET_RULES holds a bad policy value.
        from django.core.exceptions import ImproperlyConfigured

        from scheduling.rules.errors import RuleInputError
        from scheduling.selectors import rules_config

        try:
            rules_config()
        except RuleInputError as exc:
            raise ImproperlyConfigured(f"CARNET_RULES: {exc.field}: {exc.message}") from exc
