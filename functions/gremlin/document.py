"""The gremlin document: what ``PUT /gremlin`` stores and the injector obeys.

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

Persistence is :mod:`functions.gremlin.store`, obeying it :mod:`functions.gremlin.injector`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_serializer, model_validator

MODES = ("latency", "error", "crash", "database")
DATABASE_FAULTS = ("unreachable", "slow", "locked", "exhausted")
MAX_DELAY_MS = 60_000
DEFAULT_EXPIRY_SECONDS = 15 * 60
MAX_EXPIRY_SECONDS = 24 * 3600

Every = Annotated[int, Field(strict=True, ge=1)]
Percentage = Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False)]
StrictBool = Annotated[bool, Field(strict=True)]


ExpiresIn = Annotated[int, Field(strict=True, ge=1, le=MAX_EXPIRY_SECONDS)]


class Mode(BaseModel):
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
    def _one_selector(self) -> Mode:
        if self.every is not None and self.percentage is not None:
            raise ValueError("every: give either 'every' or 'percentage', not both")
        if self.expires_at is not None and self.expires_in_seconds is not None:
            raise ValueError("expiresAt: give either 'expiresAt' or 'expiresInSeconds', not both")
        return self

    @field_serializer("expires_at")
    def _utc_z(self, value: dt.datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def expired(self, now: float) -> bool:
        """True when the mode carries an expiry that has passed (``now``: epoch seconds)."""
        return self.expires_at is not None and self.expires_at.timestamp() <= now


class LatencyMode(Mode):
    delay_ms: Annotated[int, Field(strict=True, ge=0, le=MAX_DELAY_MS, alias="delayMs")] = 0

    @model_validator(mode="after")
    def _delay_required(self) -> LatencyMode:
        if self.enabled and "delay_ms" not in self.model_fields_set:
            raise ValueError("delayMs: is required when latency is enabled")
        return self


class ErrorMode(Mode):
    status_code: Annotated[int, Field(strict=True, ge=400, le=599, alias="statusCode")] = 500


class CrashMode(Mode):
    when: Literal["before-commit", "after-commit"] = "before-commit"


class DatabaseMode(Mode):
    """A fault of the service's own database, injected in ``functions.common.db``."""

    fault: Literal["unreachable", "slow", "locked", "exhausted"] = "unreachable"
    delay_ms: Annotated[int | None, Field(strict=True, ge=0, le=MAX_DELAY_MS, alias="delayMs")] = None

    @model_validator(mode="after")
    def _delay_for_slow(self) -> DatabaseMode:
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

    def modes(self) -> dict[str, Mode]:
        return {name: getattr(self, name) for name in MODES}

    def effective(self, now: float) -> GremlinDocument:
        """This document with every expired mode switched off (what the injector obeys)."""
        expired = {
            name: mode.model_copy(update={"enabled": False})
            for name, mode in self.modes().items()
            if mode.enabled and mode.expired(now)
        }
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


def _describe(err: Mapping[str, Any]) -> tuple[str, str]:
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
    updates: dict[str, Mode] = {}
    for name, mode in doc.modes().items():
        expires = mode.expires_at.timestamp() if mode.expires_at is not None else None
        if mode.expires_in_seconds is not None:
            expires = now + mode.expires_in_seconds
        elif expires is not None and expires <= now:
            given = mode.model_dump(mode="json", by_alias=True)["expiresAt"]
            errors.append({"field": f"{name}.expiresAt", "message": f"must be in the future (got {given})"})
            continue
        elif expires is not None and expires > now + MAX_EXPIRY_SECONDS:
            errors.append(
                {"field": f"{name}.expiresAt", "message": f"must be at most {MAX_EXPIRY_SECONDS // 3600} h ahead"}
            )
            continue
        elif expires is None and mode.enabled:
            expires = now + DEFAULT_EXPIRY_SECONDS
        if not mode.enabled:
            expires = None
        stamped = None if expires is None else dt.datetime.fromtimestamp(math.ceil(expires), dt.UTC)
        updates[name] = mode.model_copy(update={"expires_at": stamped, "expires_in_seconds": None})
    if errors:
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise GremlinDocumentError(f"invalid gremlin document: {text}", errors)
    return doc.model_copy(update=updates)


def stop_id(doc: GremlinDocument) -> str:
    """DynamoDB item id of the "stopped by an alarm" marker of ``doc`` (reset by PUT/DELETE)."""
    return f"stopped#{doc.fingerprint}"


def counter_id(mode: str, doc: GremlinDocument) -> str:
    """DynamoDB item id of the ``every: N`` counter of ``mode`` under ``doc``."""
    return f"{mode}#{doc.fingerprint}"
