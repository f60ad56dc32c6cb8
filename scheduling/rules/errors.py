"""Input errors raised by the pure rules package.

The service layer maps :class:`RuleInputError` onto the project's ``CarnetError`` / problem-details
shape; this package cannot import it (no Django, no project imports), so it subclasses ``ValueError``.
"""

from __future__ import annotations


class RuleInputError(ValueError):
    """Bad input to the rules, naming the field at fault (e.g. ``doses[0].given_at``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def with_prefix(self, prefix: str) -> RuleInputError:
        """The same error with ``prefix`` put in front of the field path."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return RuleInputError(field, self.message)
