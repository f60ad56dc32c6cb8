"""One error type for the domain; the API renders it as RFC 9457 problem details."""

from __future__ import annotations


class CarnetError(Exception):
    """A domain error a user can act on. ``field`` names the input at fault when there is one."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class NotFound(CarnetError):
    status = 404
    code = "not_found"


class Conflict(CarnetError):
    status = 409
    code = "conflict"
