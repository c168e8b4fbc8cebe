"""Reconcile Lambda entry point (thin; rules in checks.py, reads in sources.py, run in service.py).

Invoked by EventBridge (every 15 minutes) and on demand (`make reconcile`). Event, all optional:
`{"staleMinutes": N, "since": "<ISO-8601 with offset>"}` — N overrides RECONCILE_STALE_MINUTES
for this run; `since` limits the check to orders and reservations created since then (the DLQs
are always checked). Anything else in the event is refused, naming the field. Returns the report of
service.py; problems are an answer, not an error (the invocation fails only when the check
itself could not run: a database or SQS unreachable, a malformed event).
"""

from __future__ import annotations

from typing import Any

from functions.common.observability import get_logger, get_metrics, traced
from functions.common.settings import SettingsError
from functions.reconcile import service
from functions.reconcile.settings import get_settings, since, stale_minutes

SERVICE = service.SERVICE
logger = get_logger(SERVICE)
metrics = get_metrics(SERVICE)


@traced
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def reconcile_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    # "source": the schedule's own input ({"source": "schedule"}, infra/stack.py)
    unknown = sorted(set(event) - {"staleMinutes", "since", "source"})
    if unknown:
        raise SettingsError(f"unknown event field(s) {unknown}: the options are staleMinutes and since")
    override = stale_minutes(event["staleMinutes"]) if event.get("staleMinutes") is not None else None
    window = since(event["since"]) if event.get("since") is not None else None
    return service.reconcile(get_settings(), stale_minutes=override, since=window)
