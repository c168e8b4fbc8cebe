"""Reconcile Lambda entry point (thin; rules in checks.py, reads in sources.py, run in service.py).

Invoked by EventBridge (every 15 minutes) and on demand (`make reconcile`). Event, all optional:
`{"staleMinutes": N, "since": "<ISO-8601 with offset>"}` — N overrides RECONCILE_STALE_MINUTES
for this run; `since` limits the check to orders and reservations created since then (the DLQs
are always checked). Anything else in the event is refused, naming the field. Returns the report of
service.py; problems are an answer, not an error (the invocation fails only when the check
itself could not run: a database or SQS unreachable, a malformed event).
"""

from __future__ import annotations

import threading
from typing import Any

from functions.common.observability import get_logger, record_cold_start
from functions.common.settings import SettingsError
from functions.reconcile import service
from functions.reconcile.settings import ReconcileSettings, since, stale_minutes

SERVICE = service.SERVICE
logger = get_logger(SERVICE)

_settings: ReconcileSettings | None = None
_lock = threading.Lock()


def get_settings() -> ReconcileSettings:
    global _settings  # noqa: PLW0603 -- parsed once per environment, on first use (not at import)
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = ReconcileSettings.from_env()
    return _settings


def reset_settings() -> None:
    """Tests: forget the parsed environment."""
    global _settings  # noqa: PLW0603 -- see get_settings
    with _lock:
        _settings = None


@logger.inject_lambda_context(log_event=False)
def reconcile_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    record_cold_start(SERVICE, context)
    event = event if isinstance(event, dict) else {}
    # "source": the schedule's own input ({"source": "schedule"}, infra/stack.py)
    unknown = sorted(set(event) - {"staleMinutes", "since", "source"})
    if unknown:
        raise SettingsError(f"unknown event field(s) {unknown}: the options are staleMinutes and since")
    override = stale_minutes(event["staleMinutes"]) if event.get("staleMinutes") is not None else None
    window = since(event["since"]) if event.get("since") is not None else None
    return service.reconcile(get_settings(), stale_minutes=override, since=window)
