"""Exceptions shared across modules, without their heavy neighbours: service code that only raises
ApiError (order's service, used by the queue consumers too) must not import the web framework
(~0.3 s of a cold start), and an API without a database (gremlin) must not import the database
driver to map DatabaseUnavailable to 503."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raise from a route (or service code) to answer `status_code` with `{"message", **extra}`."""

    def __init__(self, status_code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.extra = extra


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached (connect failed or the connection broke)."""
