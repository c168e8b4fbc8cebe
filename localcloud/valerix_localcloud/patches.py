"""Three LocalStack hot paths made cheaper, applied inside LocalStack at start-up.

LocalStack runs every emulated service in one Python process, so whatever it spends CPU on
per Lambda invocation caps the whole local cloud's throughput (profiled with py-spy under
`make bench`: both paths below were ~10 % of that process's CPU each). Neither changes what
a client can observe, only how often the work is done:

* **Invocation metrics.** LocalStack publishes ``AWS/Lambda`` ``Invocations``/``Errors`` with
  one ``PutMetricData`` per invocation. Here they are counted in memory and published once a
  second as one datapoint per function with the summed value — CloudWatch's ``Sum`` (what
  these metrics are read with) is the same; AWS itself aggregates them per minute.
* **Log shipping.** LocalStack's log thread makes one ``PutLogEvents`` call per invocation.
  Here it collects what is queued within ``LOG_LINGER_SECONDS`` of the first item and makes
  one call per log stream (within the API's 10,000-event / 1 MB limits). Event timestamps
  were already the shipping time; logs reach CloudWatch at most that much later.
* **FilterLogEvents with a start time** (what the metrics exporter sends every second). moto
  tests every event the stream ever stored, so each poll got slower the longer the local cloud
  ran. When a stream's events are in timestamp order (Lambda's are: LocalStack stamps them when
  it ships them), the search starts at the first event at or after the start time (bisection);
  otherwise moto scans as before. Same events, same order.

``apply()`` is idempotent; ``VALERIX_LOCALSTACK_PATCHES=0`` turns them off.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import queue
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

LOG = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
MAX_EVENTS_PER_CALL = 10_000
MAX_BYTES_PER_CALL = 1_000_000  # AWS: 1,048,576 bytes incl. 26 bytes per event
EVENT_OVERHEAD_BYTES = 26
MAX_QUEUED_ITEMS_PER_ROUND = 1_000
LOG_LINGER_SECONDS = 0.5

_applied = False
_apply_lock = threading.Lock()


class InvocationMetrics:
    """Counts ``AWS/Lambda`` metrics per (account, region, function, metric); flushes them
    once per ``FLUSH_SECONDS`` as one ``PutMetricData`` per account and region."""

    def __init__(
        self,
        publish: Callable[[str, str, list[dict[str, Any]]], None] | None = None,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._counts: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self._lock = threading.Lock()
        self._publish = publish or _put_metric_data
        self._flush_seconds = flush_seconds
        self._thread: threading.Thread | None = None

    def add(self, function_name: str, account_id: str, region_name: str, metric: str) -> None:
        with self._lock:
            self._counts[(account_id, region_name, function_name, metric)] += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="valerix-lambda-metrics", daemon=True)
                self._thread.start()

    def record_invocation(self, function_name: str, account_id: str, region_name: str) -> None:
        self.add(function_name, account_id, region_name, "Invocations")

    def record_error(self, function_name: str, account_id: str, region_name: str) -> None:
        self.add(function_name, account_id, region_name, "Invocations")
        self.add(function_name, account_id, region_name, "Errors")

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, defaultdict(int)
        per_target: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        now = datetime.now(UTC)
        for (account_id, region_name, function_name, metric), value in counts.items():
            per_target[(account_id, region_name)].append(
                {
                    "MetricName": metric,
                    "Dimensions": [{"Name": "FunctionName", "Value": function_name}],
                    "Timestamp": now,
                    "Value": value,
                    "Unit": "Count",
                }
            )
        for (account_id, region_name), data in per_target.items():
            for start in range(0, len(data), 1000):  # PutMetricData takes 1,000 items per call
                try:
                    self._publish(account_id, region_name, data[start : start + 1000])
                except Exception as exc:  # noqa: BLE001 - metrics are best effort, as in LocalStack
                    LOG.info("Unable to put AWS/Lambda metrics to CloudWatch: %s", exc)

    def _run(self) -> None:
        while True:
            time.sleep(self._flush_seconds)
            self.flush()


def _put_metric_data(account_id: str, region_name: str, data: list[dict[str, Any]]) -> None:
    from localstack.aws.connect import connect_to
    from localstack.utils.bootstrap import is_api_enabled

    if not is_api_enabled("cloudwatch"):
        return
    cloudwatch = connect_to(aws_access_key_id=account_id, region_name=region_name).cloudwatch
    cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data)


def batched_log_events(items: list[Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Queued ``LogItem``s -> ``(group, stream, events)`` calls, in order, within API limits."""
    per_stream: dict[tuple[str, str], list[str]] = {}
    for item in items:
        # as LocalStack does: split by newline, keep the newlines, drop empty lines
        lines = [line + "\n" for line in item.logs.split("\n") if line]
        per_stream.setdefault((item.log_group, item.log_stream), []).extend(lines)
    timestamp = int(time.time() * 1000)
    calls: list[tuple[str, str, list[dict[str, Any]]]] = []
    for (group, stream), lines in per_stream.items():
        events: list[dict[str, Any]] = []
        size = 0
        for line in lines:
            line_size = len(line.encode()) + EVENT_OVERHEAD_BYTES
            if events and (len(events) >= MAX_EVENTS_PER_CALL or size + line_size > MAX_BYTES_PER_CALL):
                calls.append((group, stream, events))
                events, size = [], 0
            events.append({"timestamp": timestamp, "message": line})
            size += line_size
        if events:
            calls.append((group, stream, events))
    return calls


def run_log_loop(self: Any, *args: Any, **kwargs: Any) -> None:
    """Replacement for ``LogHandler.run_log_loop``: one ``PutLogEvents`` per stream and round."""
    from localstack.aws.connect import connect_to
    from localstack.services.lambda_.invocation.logs import QUEUE_SHUTDOWN
    from localstack.utils.aws.client_types import ServicePrincipal

    logs_client = connect_to.with_assumed_role(
        # ServicePrincipal's members are plain strings; LocalStack's own call passes the same.
        region_name=self.region,
        role_arn=self.role_arn,
        service_principal=ServicePrincipal.lambda_,  # type: ignore[arg-type]
    ).logs
    while not self._shutdown_event.is_set():
        items = [self.log_queue.get()]
        linger_until = time.monotonic() + LOG_LINGER_SECONDS
        while len(items) < MAX_QUEUED_ITEMS_PER_ROUND and items[-1] is not QUEUE_SHUTDOWN:
            try:
                items.append(self.log_queue.get(timeout=max(0.0, linger_until - time.monotonic())))
            except queue.Empty:
                break
        shutdown = any(item is QUEUE_SHUTDOWN for item in items)
        for group, stream, events in batched_log_events([i for i in items if i is not QUEUE_SHUTDOWN]):
            _put_log_events(logs_client, group, stream, events, self.region)
        if shutdown:
            return


def _put_log_events(logs_client: Any, group: str, stream: str, events: list[dict[str, Any]], region: str) -> None:
    try:
        try:
            logs_client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
        except logs_client.exceptions.ResourceNotFoundException:
            with contextlib.suppress(logs_client.exceptions.ResourceAlreadyExistsException):
                logs_client.create_log_group(logGroupName=group)
            with contextlib.suppress(logs_client.exceptions.ResourceAlreadyExistsException):
                logs_client.create_log_stream(logGroupName=group, logStreamName=stream)
            logs_client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    except Exception as exc:  # noqa: BLE001 - as LocalStack: log and keep shipping the others
        LOG.warning("Error saving logs to group %s in region %s: %s", group, region, exc)


def _in_timestamp_order(stream: Any) -> bool:
    """Are all of ``stream.events`` in timestamp order? Checked incrementally: events are only
    ever appended, so each call looks at the ones added since the last call."""
    events = stream.events
    checked = getattr(stream, "_valerix_checked", 0)
    in_order = getattr(stream, "_valerix_in_order", True)
    if checked > len(events):  # not append-only after all (events replaced): start over
        checked, in_order = 0, True
    if in_order:
        for i in range(max(1, checked), len(events)):
            if events[i].timestamp < events[i - 1].timestamp:
                in_order = False
                break
    stream._valerix_checked = len(events)
    stream._valerix_in_order = in_order
    return in_order


FilterLogEvents = Callable[..., Any]


def from_start_time(filter_log_events: FilterLogEvents) -> FilterLogEvents:
    """Wraps ``LogStream.filter_log_events(self, start_time, end_time, filter_pattern, ...)``:
    on a stream in timestamp order, hands it only the events from ``start_time`` on."""

    @functools.wraps(filter_log_events)
    def filter_recent(self: Any, start_time: Any, end_time: Any, filter_pattern: Any, *args: Any, **kwargs: Any) -> Any:
        if start_time and self.events and _in_timestamp_order(self):
            first = bisect_left(self.events, start_time, key=lambda event: event.timestamp)
            if first > 0:
                recent = copy.copy(self)  # a shallow view: same stream, fewer events
                recent.events = self.events[first:]
                return filter_log_events(recent, start_time, end_time, filter_pattern, *args, **kwargs)
        return filter_log_events(self, start_time, end_time, filter_pattern, *args, **kwargs)

    return filter_recent


def apply() -> bool:
    """Install the patches in the running LocalStack; True when they are (now) in place."""
    global _applied  # noqa: PLW0603 -- once per process, like the patches themselves
    if os.environ.get("VALERIX_LOCALSTACK_PATCHES", "1") == "0":
        return False
    with _apply_lock:
        if _applied:
            return True
        from localstack.services.lambda_.invocation import logs as lambda_logs
        from localstack.services.lambda_.invocation import version_manager

        metrics = InvocationMetrics()
        # version_manager imported these names; its per-invocation threads look them up there
        version_manager.record_cw_metric_invocation = metrics.record_invocation  # type: ignore[attr-defined]  # the patch
        version_manager.record_cw_metric_error = metrics.record_error  # type: ignore[attr-defined]  # the patch
        lambda_logs.LogHandler.run_log_loop = run_log_loop  # type: ignore[method-assign]  # the patch
        # after LocalStack's own patch of the same method (logs provider), which this wraps
        from localstack.services.logs import provider as _logs_provider  # noqa: F401 -- imported for its side effect (its patch)
        from moto.logs.models import LogStream

        LogStream.filter_log_events = from_start_time(LogStream.filter_log_events)  # type: ignore[method-assign]  # the patch
        _applied = True
        LOG.info("valerix: batched Lambda invocation metrics and log shipping, bisected log filtering")
        return True
