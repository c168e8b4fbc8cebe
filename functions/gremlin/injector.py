"""The gremlin's injector: what the inventory functions obey.

Database faults (``database_fault()``) are applied by ``functions.common.db`` before each
``transaction()`` / ``connection()`` of the services in :data:`DATABASE_FAULT_SERVICES`
(inventory: the reserve function and the queue consumer, the functions the stack wires to the
gremlin); ``unreachable``/``exhausted`` raise ``DatabaseUnavailable`` before any statement ran.
Its ``every: N`` counts those transactions.

Injection semantics (what :class:`GremlinInjector` does on the inventory reservation
path):

* ``before_reservation()`` runs before the reservation transaction. For every mode that
  applies at this point and is enabled (latency, error, crash with ``when: before-commit``)
  the selection is decided first -- each such ``every: N`` counter is incremented exactly once
  per request, whatever the other modes decide, so each mode's pattern is independent of the
  others. Then the effects are applied in this order:

  1. latency: ``time.sleep(delayMs)`` (combines with everything below);
  2. crash before-commit: log, flush the metric, ``os._exit(1)`` -- a crash wins over an
     error on the same request;
  3. error: ``raise InjectedError(statusCode, message)``.

  So one request can get latency plus at most one of {crash, error}.
* ``after_commit()`` runs after the reservation transaction committed; with ``crash`` enabled
  and ``when: after-commit`` it counts that request and, if selected, logs, flushes and exits:
  the stock moved but the caller never hears back (the "Schrödinger" case). Its ``every: N``
  therefore counts committed reservations (calls to ``after_commit``).

``every: N`` is counted across all execution environments with one atomic DynamoDB counter
per mode in ``GREMLIN_STATE_TABLE`` (pk ``id``; ``UpdateItem ADD #count :1``; affected when the
new count ``% N == 0``). The counter id includes a hash of the whole document
(``latency#<hash>``), so an environment still holding an older document in its cache never
disturbs the pattern of a new one; ``PUT``/``DELETE /gremlin`` also deletes all counters.
Requests are counted only while the mode is enabled.

The document is read through Powertools' SSM provider with ``max_age`` =
``GREMLIN_CACHE_SECONDS`` (default 1, whole seconds), so a change is obeyed within ~2 s.
Every injection is logged (``mode`` key) and counted as ``GremlinInjections`` (dimension
``mode``: ``latency`` / ``error`` / ``crash_before_commit`` / ``crash_after_commit`` /
``database_unreachable`` / ``database_slow`` / ``database_exhausted``), emitted
as its own EMF line at once, so it is out before a crash.

Fail open: if SSM or DynamoDB cannot be reached, or the stored document is invalid, nothing
is injected and a warning is logged; the injector never breaks inventory. AWS calls use short
timeouts (0.5 s connect, 1 s read, one retry), and after a failed SSM read or counter update
the injector does not try again for one cache window (at least 1 s).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from functions.common import aws
from functions.common.observability import MetricUnit, get_logger, put_metric
from functions.common.settings import GremlinSettings, get_settings, runtime
from functions.gremlin.document import (
    ALL_OFF,
    DatabaseMode,
    GremlinDocument,
    GremlinDocumentError,
    Mode,
    counter_id,
    parse_document_json,
)
from functions.gremlin.store import check_stop

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

# Which services' database transactions obey the ``database`` mode (POWERTOOLS_SERVICE_NAME of
# the function; it must also be given GREMLIN_PARAMETER_NAME by the stack). Order is left out
# on purpose: its own database failing is what its callers see as a 5xx, not a resilience path.
DATABASE_FAULT_SERVICES = ("inventory",)
# The advisory lock key every "locked" transaction queues for (an arbitrary constant).
LOCK_KEY = 0x6772656D6C696E  # "gremlin"
METRIC_NAME = "GremlinInjections"
DEFAULT_CACHE_SECONDS = 1


class InjectedError(Exception):
    """Raised by ``before_reservation()``; inventory answers ``status_code`` + ``{"message"}``."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class GremlinInjector:
    """Applies the gremlin document on the inventory HTTP path. See the module docstring."""

    def __init__(
        self,
        parameter_name: str = "",
        state_table: str = "",
        cache_seconds: int = DEFAULT_CACHE_SECONDS,
        *,
        service: str = "inventory",
        ssm_client: Any = None,
        dynamodb_client: Any = None,
        cloudwatch_client: Any = None,
        rng: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.parameter_name = parameter_name
        self.state_table = state_table
        self.cache_seconds = cache_seconds
        self.service = service  # the metric's `service`, and whether database faults apply
        self.logger = get_logger(service)
        self._ssm_client = ssm_client
        self._dynamodb_client = dynamodb_client
        self._cloudwatch_client = cloudwatch_client
        self._provider: SSMProvider | None = None
        self._rng = rng or random.random
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._unavailable_until = 0.0
        self._counters_unavailable_until = 0.0
        self._stop_state: dict[str, Any] = {}
        self._parsed: tuple[str, GremlinDocument] | None = None
        self._warned_unconfigured = False

    @classmethod
    def from_settings(cls, settings: GremlinSettings, service: str) -> GremlinInjector:
        return cls(settings.parameter_name or "", settings.state_table or "", settings.cache_seconds, service=service)

    # -- collaborators (on first use: no network, no clients at import) -------------------

    def _ssm_provider(self) -> SSMProvider:
        with self._lock:
            if self._provider is None:
                from aws_lambda_powertools.utilities.parameters import SSMProvider

                self._provider = SSMProvider(boto3_client=self._ssm_client or aws.client("ssm", "fail_fast"))
            return self._provider

    def _dynamodb(self) -> Any:
        return self._dynamodb_client or aws.client("dynamodb", "fail_fast")

    def _cloudwatch(self) -> Any:
        return self._cloudwatch_client or aws.client("cloudwatch", "fail_fast")

    # -- document -------------------------------------------------------------------------

    def document(self) -> GremlinDocument:
        """The current document (cached ``cache_seconds``); all off when unknown (fail open)."""
        if not self.parameter_name:
            if not self._warned_unconfigured:
                self._warned_unconfigured = True
                self.logger.warning("gremlin disabled: GREMLIN_PARAMETER_NAME is not set")
            return ALL_OFF
        if self._clock() < self._unavailable_until:
            return ALL_OFF
        try:
            raw = str(self._ssm_provider().get(self.parameter_name, max_age=self.cache_seconds))
        except Exception as exc:  # noqa: BLE001 -- fail open, whatever went wrong
            self._unavailable_until = self._clock() + max(self.cache_seconds, 1)
            cause = exc.__cause__ or exc.__context__
            code = getattr(cause, "response", {}).get("Error", {}).get("Code") if cause else None
            if code == "ParameterNotFound":
                self.logger.info(
                    "gremlin parameter not found; gremlin is off", extra={"parameter": self.parameter_name}
                )
            else:
                self.logger.warning(
                    "gremlin parameter unreadable; failing open (no injection)",
                    extra={"parameter": self.parameter_name, "error": str(exc)},
                )
            return ALL_OFF
        parsed = self._parsed
        if parsed is not None and parsed[0] == raw:
            return parsed[1]
        try:
            doc = parse_document_json(raw)
        except GremlinDocumentError as exc:
            self.logger.warning("stored gremlin document is invalid; failing open", extra={"error": exc.message})
            doc = ALL_OFF
        self._parsed = (raw, doc)
        return doc

    # -- selection ------------------------------------------------------------------------

    def _selected(self, mode: str, config: Mode, doc: GremlinDocument) -> bool:
        if config.percentage is not None:
            return self._rng() * 100.0 < config.percentage
        if config.every is None or config.every == 1:
            return True  # every request: nothing to count
        count = self._count(mode, doc)
        return count is not None and count % config.every == 0

    def _count(self, mode: str, doc: GremlinDocument) -> int | None:
        """Atomically count this request for ``mode``; ``None`` when the table is unreachable."""
        if not self.state_table:
            self.logger.warning("gremlin 'every' needs GREMLIN_STATE_TABLE; failing open", extra={"mode": mode})
            return None
        if self._clock() < self._counters_unavailable_until:
            return None  # a recent failure: do not stall every request on a dead table
        try:
            result = self._dynamodb().update_item(
                TableName=self.state_table,
                Key={"id": {"S": counter_id(mode, doc)}},
                UpdateExpression="ADD #count :one",
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="UPDATED_NEW",
            )
            return int(result["Attributes"]["count"]["N"])
        except Exception as exc:  # noqa: BLE001 -- fail open
            self._counters_unavailable_until = self._clock() + max(self.cache_seconds, 1)
            self.logger.warning(
                "gremlin counter unavailable; failing open (no injection)",
                extra={"mode": mode, "table": self.state_table, "error": str(exc)},
            )
            return None

    # -- effects --------------------------------------------------------------------------

    def _record(self, mode: str, message: str, **extra: Any) -> None:
        """Log the injection and emit its metric at once (its own EMF line)."""
        # The gremlin must never become the outage: a failing log or metric is ignored.
        with contextlib.suppress(Exception):
            self.logger.warning(message, extra={"gremlin": True, "mode": mode, **extra})
        put_metric(METRIC_NAME, MetricUnit.Count, 1, service=self.service, mode=mode)  # never raises

    def _crash(self, mode: str, message: str) -> None:
        self._record(mode, message)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(1)

    def _obeyed(self) -> tuple[GremlinDocument, GremlinDocument]:
        """(stored document, the same with expired modes off -- all off once a stop condition
        fired). Counters key on the stored one."""
        doc = self.document()
        effective = doc.effective(self._wall_clock())
        if effective.any_enabled and doc.stop_conditions and self._stopped(doc):
            return doc, ALL_OFF
        return doc, effective

    def _stopped(self, doc: GremlinDocument) -> bool:
        """Whether a stop condition of ``doc`` fired. Checked at most once per cache window; once
        fired it stays fired for this document. If the alarms cannot be read, the gremlin holds
        off for that window: a safety switch that cannot be checked is treated as tripped."""
        fingerprint = doc.fingerprint
        if self._stop_state.get("fingerprint") == fingerprint:
            if self._stop_state.get("fired"):
                return True
            if self._clock() < self._stop_state.get("until", 0.0):
                return bool(self._stop_state.get("unknown"))
        state: dict[str, Any] = {"fingerprint": fingerprint, "until": self._clock() + max(self.cache_seconds, 1)}
        try:
            marker = check_stop(self._dynamodb(), self._cloudwatch(), self.state_table, doc, self._wall_clock())
        except Exception as exc:  # noqa: BLE001 -- whatever makes them unreadable, no injection without them
            self.logger.warning(
                "gremlin stop conditions unreadable; holding off injection",
                extra={"alarms": doc.stop_conditions, "error": str(exc)},
            )
            state["unknown"] = True
            self._stop_state = state
            return True
        if marker:
            state["fired"] = True
            self._record("stopped", "gremlin: switched off by a stop condition", alarm=marker["alarm"])
        self._stop_state = state
        return bool(marker)

    def before_reservation(self) -> None:
        """Latency, then crash before-commit or error. May sleep, raise InjectedError or exit."""
        stored, doc = self._obeyed()
        if not (doc.latency.enabled or doc.error.enabled or doc.crash.enabled):
            return
        latency = doc.latency.enabled and self._selected("latency", doc.latency, stored)
        crash = doc.crash.enabled and doc.crash.when == "before-commit" and self._selected("crash", doc.crash, stored)
        error = doc.error.enabled and self._selected("error", doc.error, stored)
        if latency:
            self._record("latency", "gremlin: injecting latency", delayMs=doc.latency.delay_ms)
            time.sleep(doc.latency.delay_ms / 1000.0)
        if crash:
            self._crash("crash_before_commit", "gremlin: crashing before commit")
        if error:
            code = doc.error.status_code
            self._record("error", "gremlin: injecting error", statusCode=code)
            raise InjectedError(code, f"gremlin: injected error {code}")

    def after_commit(self) -> None:
        """Crash after-commit (the caller never hears back). Call right after the commit."""
        stored, doc = self._obeyed()
        if doc.crash.enabled and doc.crash.when == "after-commit" and self._selected("crash", doc.crash, stored):
            self._crash("crash_after_commit", "gremlin: crashing after commit")

    def database_fault(self) -> DatabaseMode | None:
        """The database fault this transaction suffers, or ``None``. Called by
        :mod:`functions.common.db` before every transaction/connection; it applies the fault.

        Only services in :data:`DATABASE_FAULT_SERVICES` whose function is wired to the gremlin
        (``GREMLIN_PARAMETER_NAME`` set) obey; anything else returns ``None`` without reading
        SSM. ``every: N`` counts this service's database transactions (one shared counter)."""
        if self.service not in DATABASE_FAULT_SERVICES or not self.parameter_name:
            return None
        stored, doc = self._obeyed()
        mode = doc.database
        if not mode.enabled or not self._selected("database", mode, stored):
            return None
        extra: dict[str, Any] = {"fault": mode.fault}
        if mode.delay_ms is not None:
            extra["delayMs"] = mode.delay_ms
        self._record(f"database_{mode.fault}", f"gremlin: database {mode.fault}", **extra)
        return mode


@functools.cache
def injector() -> GremlinInjector:
    """This environment's injector, configured from its settings on first use."""
    return GremlinInjector.from_settings(get_settings().gremlin, runtime().service_name)
