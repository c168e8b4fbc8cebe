"""The gremlin: chaos document model and the injector inventory obeys.

Document (SSM parameter ``GREMLIN_PARAMETER_NAME``; every part optional)::

    {"latency": {"enabled": true,  "delayMs": 5000, "every": 1},
     "error":   {"enabled": false, "statusCode": 500, "percentage": 10},
     "crash":   {"enabled": false, "when": "after-commit", "every": 4},
     "database": {"enabled": true, "fault": "slow", "delayMs": 2500, "every": 2,
                  "expiresAt": "2026-12-03T09:15:00Z"}}

Rules (enforced by :class:`GremlinDocument`, extra fields forbidden everywhere):

* a missing mode is switched off; a mode that is present is switched on unless it says
  ``"enabled": false``;
* ``latency.delayMs``: integer 0..60000, required when latency is enabled;
* ``error.statusCode``: integer 400..599, default 500;
* ``crash.when``: ``"before-commit"`` (default) or ``"after-commit"``;
* each mode takes at most one of ``every`` (integer >= 1: the Nth, 2Nth, 3Nth... request is
  affected) or ``percentage`` (number 0..100: random share); with neither, every request is
  affected;
* ``database.fault``: ``"unreachable"`` (default; the connection is refused at once),
  ``"exhausted"`` (Postgres' ``53300 too many connections``) or ``"slow"`` (every statement of
  the transaction waits: ``pg_sleep(delayMs)`` on the server right after ``BEGIN``, so the
  transaction really holds its connection that long); ``delayMs`` 0..60000 is required for
  ``slow`` and refused for the others;
* the safety switch: every mode carries ``expiresAt`` (ISO 8601 with a zone; stored as UTC
  ``...Z``). ``PUT`` may give ``expiresAt`` (future, at most 24 h ahead) or
  ``expiresInSeconds`` (1..86400); an enabled mode with neither gets 15 minutes
  (:func:`stamp_expiry`). After it the mode is off by itself: the injector obeys
  :meth:`GremlinDocument.effective`, and ``GET`` (:meth:`GremlinDocument.to_view`) shows it
  with ``enabled: false, expired: true`` (and ``remainingSeconds`` for every mode with an
  expiry).

Stop conditions: ``stopConditions`` (top level, at most 5 CloudWatch alarm names; which names
are allowed is checked on ``PUT`` by the gremlin store). Once one is in ALARM, a marker
``stopped#<fingerprint>`` is written to ``GREMLIN_STATE_TABLE`` and the whole document is off
for good (the next PUT/DELETE resets the table). The injector checks at most once per cache
window; if the alarms cannot be read it injects nothing for that window.

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

import datetime as dt
import hashlib
import json
import math
import os
import random
import sys
import threading
import time
from typing import Annotated, Any, Callable, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_serializer, model_validator

MODES = ("latency", "error", "crash", "database")
DATABASE_FAULTS = ("unreachable", "slow", "locked", "exhausted")
# The advisory lock key every "locked" transaction queues for (an arbitrary constant).
LOCK_KEY = 0x6772656D6C696E  # "gremlin"
# Which services' database transactions obey the ``database`` mode (POWERTOOLS_SERVICE_NAME of
# the function; it must also be given GREMLIN_PARAMETER_NAME by the stack). Order is left out
# on purpose: its own database failing is what its callers see as a 5xx, not a resilience path.
DATABASE_FAULT_SERVICES = ("inventory",)
METRIC_NAME = "GremlinInjections"
DEFAULT_CACHE_SECONDS = 1
MAX_DELAY_MS = 60_000
DEFAULT_EXPIRY_SECONDS = 15 * 60
MAX_EXPIRY_SECONDS = 24 * 3600

Every = Annotated[int, Field(strict=True, ge=1)]
Percentage = Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False)]
StrictBool = Annotated[bool, Field(strict=True)]


# --------------------------------------------------------------------------------------
# Document model
# --------------------------------------------------------------------------------------


ExpiresIn = Annotated[int, Field(strict=True, ge=1, le=MAX_EXPIRY_SECONDS)]


class _Mode(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: StrictBool = True
    every: Every | None = None
    percentage: Percentage | None = None
    # The safety switch: an absolute UTC time after which the mode is off by itself. A request
    # may give ``expiresInSeconds`` instead; :func:`stamp_expiry` turns it into ``expiresAt``
    # (only ``expiresAt`` is ever stored).
    expires_at: AwareDatetime | None = Field(default=None, alias="expiresAt")
    expires_in_seconds: ExpiresIn | None = Field(default=None, alias="expiresInSeconds", exclude=True)

    @model_validator(mode="after")
    def _one_selector(self):
        if self.every is not None and self.percentage is not None:
            raise ValueError("every: give either 'every' or 'percentage', not both")
        if self.expires_at is not None and self.expires_in_seconds is not None:
            raise ValueError("expiresAt: give either 'expiresAt' or 'expiresInSeconds', not both")
        return self

    @field_serializer("expires_at")
    def _utc_z(self, value: dt.datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def expired(self, now: float) -> bool:
        """True when the mode carries an expiry that has passed (``now``: epoch seconds)."""
        return self.expires_at is not None and self.expires_at.timestamp() <= now


class LatencyMode(_Mode):
    delay_ms: Annotated[int, Field(strict=True, ge=0, le=MAX_DELAY_MS, alias="delayMs")] = 0

    @model_validator(mode="after")
    def _delay_required(self):
        if self.enabled and "delay_ms" not in self.model_fields_set:
            raise ValueError("delayMs: is required when latency is enabled")
        return self


class ErrorMode(_Mode):
    status_code: Annotated[int, Field(strict=True, ge=400, le=599, alias="statusCode")] = 500


class CrashMode(_Mode):
    when: Literal["before-commit", "after-commit"] = "before-commit"


class DatabaseMode(_Mode):
    """A fault of the service's own database, injected in ``functions.common.db``."""

    fault: Literal["unreachable", "slow", "locked", "exhausted"] = "unreachable"
    delay_ms: Annotated[int | None, Field(strict=True, ge=0, le=MAX_DELAY_MS, alias="delayMs")] = None

    @model_validator(mode="after")
    def _delay_for_slow(self):
        timed = self.fault in ("slow", "locked")
        if timed and self.enabled and self.delay_ms is None:
            raise ValueError(f"delayMs: is required when the database fault is '{self.fault}'")
        if not timed and self.delay_ms is not None:
            raise ValueError(f"delayMs: only applies to the 'slow' and 'locked' faults, not '{self.fault}'")
        return self


AlarmName = Annotated[str, Field(strict=True, min_length=1, max_length=255)]


class GremlinDocument(BaseModel):
    """The whole gremlin document; missing modes are off."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    latency: LatencyMode = Field(default_factory=lambda: LatencyMode(enabled=False))
    error: ErrorMode = Field(default_factory=lambda: ErrorMode(enabled=False))
    crash: CrashMode = Field(default_factory=lambda: CrashMode(enabled=False))
    database: DatabaseMode = Field(default_factory=lambda: DatabaseMode(enabled=False))
    # Stop conditions: names of the stack's CloudWatch alarms; when one is in ALARM the whole
    # gremlin switches itself off for good (until the next PUT). Names are checked on PUT.
    stop_conditions: Annotated[list[AlarmName] | None, Field(alias="stopConditions", max_length=5)] = None

    def modes(self) -> dict[str, _Mode]:
        return {name: getattr(self, name) for name in MODES}

    def effective(self, now: float) -> "GremlinDocument":
        """This document with every expired mode switched off (what the injector obeys)."""
        expired = {name: mode.model_copy(update={"enabled": False})
                   for name, mode in self.modes().items() if mode.enabled and mode.expired(now)}
        return self.model_copy(update=expired) if expired else self

    def to_view(self, now: float, stopped: dict[str, str] | None = None) -> dict[str, Any]:
        """The public shape of ``GET``/``PUT``: an expired mode shows ``enabled: false`` and
        ``expired: true``; a mode with an expiry shows its ``remainingSeconds``. A gremlin a
        stop condition switched off shows ``stopped`` ({alarm, at}) and every mode off."""
        view = self.to_json_dict()
        if stopped:
            view["stopped"] = stopped
            for name in MODES:
                view[name]["enabled"] = False
        for name, mode in self.modes().items():
            if mode.expires_at is None:
                continue
            remaining = mode.expires_at.timestamp() - now
            view[name]["expired"] = remaining <= 0
            view[name]["remainingSeconds"] = max(0, int(remaining))
            if remaining <= 0:
                view[name]["enabled"] = False
        return view

    def to_json_dict(self) -> dict[str, Any]:
        """The document incl. defaults, in its public (camelCase) shape; unset selectors omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @property
    def any_enabled(self) -> bool:
        return any(mode.enabled for mode in self.modes().values())


def all_off() -> GremlinDocument:
    """The "all off" document (what ``DELETE /gremlin`` stores)."""
    return GremlinDocument()


ALL_OFF = all_off()


class GremlinDocumentError(ValueError):
    """An invalid gremlin document: ``message`` names the fields, ``errors`` lists them."""

    def __init__(self, message: str, errors: list[dict[str, str]], status_code: int = 422):
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.status_code = status_code


def _describe(err: dict[str, Any]) -> tuple[str, str]:
    loc = [str(part) for part in err.get("loc", ())]
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return loc[0], f"unknown mode '{loc[0]}' (expected one of: {', '.join(MODES)})"
        return ".".join(loc), f"unknown field '{loc[-1]}' in {loc[0]}"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        field, sep, rest = msg.partition(": ")
        if sep and field.isidentifier():  # our validators say "<field>: <text>"
            return ".".join([*loc, field]), rest
    if kind == "model_type" and not loc:
        return "body", "the gremlin document must be a JSON object"
    if kind == "model_type":
        return ".".join(loc), f"'{loc[-1]}' must be an object"
    if "input" in err and kind not in ("missing", "value_error"):
        msg = f"{msg} (got {json.dumps(err['input'], default=str)})"
    return ".".join(loc) or "body", msg


def parse_document(raw: Any) -> GremlinDocument:
    """Validate a decoded JSON value; raise :class:`GremlinDocumentError` naming each field."""
    try:
        return GremlinDocument.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"field": field, "message": message}
            for field, message in (_describe(e) for e in exc.errors(include_url=False))
        ]
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise GremlinDocumentError(f"invalid gremlin document: {text}", errors) from None


def parse_document_json(text: str | bytes | None) -> GremlinDocument:
    """Decode and validate; malformed JSON is a 400 :class:`GremlinDocumentError`."""
    if text is None or (isinstance(text, (str, bytes)) and not text.strip()):
        raise GremlinDocumentError(
            "request body must be a JSON object (the gremlin document)",
            [{"field": "body", "message": "missing"}],
            status_code=400,
        )
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GremlinDocumentError(
            f"request body is not valid JSON: {exc}",
            [{"field": "body", "message": "not valid JSON"}],
            status_code=400,
        ) from None
    return parse_document(raw)


def stamp_expiry(doc: GremlinDocument, now: float) -> GremlinDocument:
    """Give every enabled mode its absolute ``expiresAt`` before it is stored (``PUT``).

    ``expiresInSeconds`` becomes ``now + seconds``; an enabled mode without either gets the
    default (15 min). A given ``expiresAt`` must lie in the future and at most 24 h ahead --
    otherwise :class:`GremlinDocumentError` (422) naming ``<mode>.expiresAt``. A disabled mode
    stores no expiry (nothing to switch off)."""
    errors: list[dict[str, str]] = []
    updates: dict[str, _Mode] = {}
    for name, mode in doc.modes().items():
        expires = mode.expires_at.timestamp() if mode.expires_at is not None else None
        if mode.expires_in_seconds is not None:
            expires = now + mode.expires_in_seconds
        elif expires is not None and expires <= now:
            errors.append({"field": f"{name}.expiresAt",
                           "message": f"must be in the future (got {mode.model_dump(mode='json', by_alias=True)['expiresAt']})"})
            continue
        elif expires is not None and expires > now + MAX_EXPIRY_SECONDS:
            errors.append({"field": f"{name}.expiresAt",
                           "message": f"must be at most {MAX_EXPIRY_SECONDS // 3600} h ahead"})
            continue
        elif expires is None and mode.enabled:
            expires = now + DEFAULT_EXPIRY_SECONDS
        if not mode.enabled:
            expires = None
        stamped = None if expires is None else dt.datetime.fromtimestamp(math.ceil(expires), dt.timezone.utc)
        updates[name] = mode.model_copy(update={"expires_at": stamped, "expires_in_seconds": None})
    if errors:
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise GremlinDocumentError(f"invalid gremlin document: {text}", errors)
    return doc.model_copy(update=updates)


def stop_id(doc: GremlinDocument) -> str:
    """DynamoDB item id of the "stopped by an alarm" marker of ``doc`` (reset by PUT/DELETE)."""
    return f"stopped#{doc.fingerprint}"


def alarm_in_alarm(cloudwatch: Any, names: list[str]) -> str | None:
    """The first of ``names`` whose CloudWatch alarm state is ALARM, or ``None``."""
    found = cloudwatch.describe_alarms(AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    for alarm in [*found.get("MetricAlarms", []), *found.get("CompositeAlarms", [])]:
        if alarm.get("StateValue") == "ALARM":
            return alarm["AlarmName"]
    return None


def read_stop_marker(dynamodb: Any, table: str, doc: GremlinDocument) -> dict[str, str] | None:
    item = dynamodb.get_item(TableName=table, Key={"id": {"S": stop_id(doc)}}, ConsistentRead=True).get("Item")
    if not item:
        return None
    return {"alarm": item["alarm"]["S"], "at": item["at"]["S"]}


def write_stop_marker(dynamodb: Any, table: str, doc: GremlinDocument, alarm: str, now: float) -> dict[str, str]:
    at = dt.datetime.fromtimestamp(int(now), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    dynamodb.put_item(TableName=table, Item={"id": {"S": stop_id(doc)}, "alarm": {"S": alarm}, "at": {"S": at}})
    return {"alarm": alarm, "at": at}


def check_stop(dynamodb: Any, cloudwatch: Any, table: str, doc: GremlinDocument, now: float) -> dict[str, str] | None:
    """Has a stop condition of ``doc`` fired? The marker if it already did; else the alarms are
    read and, if one is in ALARM, the marker is written (so it stays off when the alarm clears)."""
    if not doc.stop_conditions:
        return None
    marker = read_stop_marker(dynamodb, table, doc)
    if marker:
        return marker
    fired = alarm_in_alarm(cloudwatch, doc.stop_conditions)
    return write_stop_marker(dynamodb, table, doc, fired, now) if fired else None


def counter_id(mode: str, doc: GremlinDocument) -> str:
    """DynamoDB item id of the ``every: N`` counter of ``mode`` under ``doc``."""
    return f"{mode}#{doc.fingerprint}"


# --------------------------------------------------------------------------------------
# Injector
# --------------------------------------------------------------------------------------


class InjectedError(Exception):
    """Raised by ``before_reservation()``; inventory answers ``status_code`` + ``{"message"}``."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _cache_seconds_from_env() -> int:
    raw = os.getenv("GREMLIN_CACHE_SECONDS", "")
    try:
        return max(0, int(float(raw))) if raw.strip() else DEFAULT_CACHE_SECONDS
    except ValueError:
        return DEFAULT_CACHE_SECONDS


def _client_config():
    from botocore.config import Config

    # Short timeouts, few retries: the gremlin must never stall inventory when AWS is away.
    return Config(connect_timeout=0.5, read_timeout=1, retries={"max_attempts": 2, "mode": "standard"})


class GremlinInjector:
    """Applies the gremlin document on the inventory HTTP path. See the module docstring."""

    def __init__(
        self,
        parameter_name: str | None = None,
        state_table: str | None = None,
        cache_seconds: int | None = None,
        *,
        ssm_client: Any = None,
        dynamodb_client: Any = None,
        cloudwatch_client: Any = None,
        rng: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.parameter_name = parameter_name if parameter_name is not None else os.getenv("GREMLIN_PARAMETER_NAME", "")
        self.state_table = state_table if state_table is not None else os.getenv("GREMLIN_STATE_TABLE", "")
        self.cache_seconds = cache_seconds if cache_seconds is not None else _cache_seconds_from_env()
        self._ssm_client = ssm_client
        self._dynamodb_client = dynamodb_client
        self._provider = None
        self._rng = rng or random.random
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._unavailable_until = 0.0
        self._counters_unavailable_until = 0.0
        self._cloudwatch_client = cloudwatch_client
        self._stop_state: dict[str, Any] = {}
        self._parsed: tuple[str, GremlinDocument] | None = None
        self._logger = None
        self._warned_unconfigured = False

    # -- collaborators (lazy: no network, no clients at import) --------------------------

    @property
    def service(self) -> str:
        return os.getenv("POWERTOOLS_SERVICE_NAME") or "inventory"

    @property
    def logger(self):
        if self._logger is None:
            from functions.common.observability import get_logger

            self._logger = get_logger(self.service)
        return self._logger

    def _ssm_provider(self):
        with self._lock:
            if self._provider is None:
                from aws_lambda_powertools.utilities.parameters import SSMProvider

                client = self._ssm_client
                if client is None:
                    import boto3

                    client = boto3.client("ssm", config=_client_config())
                self._provider = SSMProvider(boto3_client=client)
            return self._provider

    def _dynamodb(self):
        with self._lock:
            if self._dynamodb_client is None:
                import boto3

                self._dynamodb_client = boto3.client("dynamodb", config=_client_config())
            return self._dynamodb_client

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
            raw = self._ssm_provider().get(self.parameter_name, max_age=self.cache_seconds)
        except Exception as exc:  # noqa: BLE001 -- fail open, whatever went wrong
            self._unavailable_until = self._clock() + max(self.cache_seconds, 1)
            cause = exc.__cause__ or exc.__context__
            code = getattr(cause, "response", {}).get("Error", {}).get("Code") if cause else None
            if code == "ParameterNotFound":
                self.logger.info("gremlin parameter not found; gremlin is off", extra={"parameter": self.parameter_name})
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

    def _selected(self, mode: str, config: _Mode, doc: GremlinDocument) -> bool:
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
        try:
            self.logger.warning(message, extra={"gremlin": True, "mode": mode, **extra})
        except Exception:  # noqa: BLE001
            pass
        try:
            from functions.common.observability import MetricUnit, put_metric

            put_metric(METRIC_NAME, MetricUnit.Count, 1, service=self.service, mode=mode)
        except Exception:  # noqa: BLE001
            pass

    def _crash(self, mode: str, message: str) -> None:
        self._record(mode, message)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(1)

    def _obeyed(self) -> tuple[GremlinDocument, GremlinDocument]:
        """(stored document, the same with expired modes off -- all off once a stop condition
        fired). Counters key on the stored one."""
        doc = self.document()
        effective = doc.effective(self._wall_clock())
        if effective.any_enabled and doc.stop_conditions and self._stopped(doc):
            return doc, ALL_OFF
        return doc, effective

    def _cloudwatch(self):
        with self._lock:
            if self._cloudwatch_client is None:
                import boto3

                self._cloudwatch_client = boto3.client("cloudwatch", config=_client_config())
            return self._cloudwatch_client

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
        except Exception as exc:  # noqa: BLE001
            self.logger.warning("gremlin stop conditions unreadable; holding off injection",
                                extra={"alarms": doc.stop_conditions, "error": str(exc)})
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
        crash = (
            doc.crash.enabled
            and doc.crash.when == "before-commit"
            and self._selected("crash", doc.crash, stored)
        )
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
        extra = {"fault": mode.fault}
        if mode.delay_ms is not None:
            extra["delayMs"] = mode.delay_ms
        self._record(f"database_{mode.fault}", f"gremlin: database {mode.fault}", **extra)
        return mode


_INJECTOR: GremlinInjector | None = None
_INJECTOR_LOCK = threading.Lock()


def injector() -> GremlinInjector:
    """The process-wide injector (created on first use from the environment)."""
    global _INJECTOR
    if _INJECTOR is None:
        with _INJECTOR_LOCK:
            if _INJECTOR is None:
                _INJECTOR = GremlinInjector()
    return _INJECTOR


def reset_injector(new: GremlinInjector | None = None) -> None:
    """Replace (or drop) the process-wide injector; for tests."""
    global _INJECTOR
    with _INJECTOR_LOCK:
        _INJECTOR = new


__all__ = [
    "ALL_OFF",
    "CrashMode",
    "DATABASE_FAULTS",
    "DATABASE_FAULT_SERVICES",
    "DatabaseMode",
    "ErrorMode",
    "GremlinDocument",
    "GremlinDocumentError",
    "GremlinInjector",
    "InjectedError",
    "LatencyMode",
    "METRIC_NAME",
    "MODES",
    "all_off",
    "counter_id",
    "injector",
    "parse_document",
    "parse_document_json",
    "reset_injector",
    "stamp_expiry",
    "check_stop",
    "stop_id",
]
