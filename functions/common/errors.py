"""Exceptions shared across modules, without their heavy neighbours: an API without a database
(gremlin) must not import the database driver to map DatabaseUnavailable to 503, and service
code must not import the web framework (~0.3 s of a cold start) to raise them.

Service layers raise domain exceptions (functions/order/model.py, functions/inventory/service.py
and the two below); each service's app layer maps them to HTTP in one place. `ApiError` is for
that app layer (routes, the admin-key dependency), never for service code.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raise from a route to answer `status_code` with `{"message", **extra}`."""

    def __init__(self, status_code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.extra = extra


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached (connect failed or the connection broke)."""


class DeadlineExceeded(RuntimeError):
    """The caller's deadline (functions/common/deadline.py) left too little time to start the
    work, or passed while it ran: nothing was committed."""
