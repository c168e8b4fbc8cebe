"""FastAPI app factory, error handling, RED metrics and the Mangum entry point.

Written once and used by the order, inventory and gremlin APIs:

    from functions.common.api import ApiError, create_app, make_api_handler

    app = create_app("inventory")

    @app.get("/products")
    def list_products(): ...

    api_handler = make_api_handler(app)          # Lambda handler (API Gateway REST v1 proxy)

Guarantees for every app built here:
- every error body is JSON `{"message": ...}`; validation errors name the field (422, or 400 for
  malformed JSON); a body over 16 KiB is refused with 413 before the route runs;
- an unexpected exception becomes `500 {"message": "internal error"}` (logged with its stack
  trace, never returned to the caller);
- `HttpRequests` (route, method, status_class) and `HttpRequestDuration` (route, method) are
  emitted for every request, with the route *template* (e.g. `/orders/{orderId}`), or
  `unmatched` for unknown paths;
- the Lambda handler is decorated like every other one (functions/common/observability.py):
  the Lambda context on every log line, `ColdStart` once per environment;
- building the handler registers the SnapStart after-restore hook that re-seeds `random` in
  every restored environment (functions/common/snapstart.py; a no-op outside AWS);
- every request has a correlation id: a well-formed `X-Correlation-Id` header, else API
  Gateway's request id (requestContext.requestId), else a new one. It is set on the service's
  Powertools logger (every log line of the request carries `correlation_id`), returned in the
  `X-Correlation-Id` response header and, as `requestId`, in every error body, so a caller can
  quote it and an operator finds the detail in the logs. Error bodies say what was wrong in a few
  words and never carry exception text, hosts, ports, ARNs or driver names;
- CORS: a request whose `Origin` is listed in CORS_ALLOW_ORIGINS (comma-separated, `*` = any)
  gets `Access-Control-Allow-Origin` on its response (Lambda proxy responses must carry it
  themselves); a preflight `OPTIONS` that reaches the function is answered 204.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.common import observability
from functions.common.errors import ApiError, DatabaseUnavailable  # ApiError: importable from here too
from functions.common.observability import (
    MetricUnit,
    bind_correlation_id,
    current_correlation_id,
    get_logger,
    get_metrics,
    put_metric,
    valid_correlation_id,
)
from functions.common.snapstart import reseed_random_after_restore

__all__ = [
    "CORRELATION_ID_HEADER",
    "ERROR_RESPONSES",
    "MAX_BODY_BYTES",
    "ApiError",
    "ErrorBody",
    "correlation_id_of",
    "create_app",
    "current_correlation_id",
    "ensure_event_loop",
    "json_error",
    "make_api_handler",
]

MAX_BODY_BYTES = 16 * 1024


def _check_pydantic_v1_only_once_loaded() -> None:
    """FastAPI refuses pydantic.v1 models, and to check a route's types it imports pydantic.v1
    (pydantic's whole v1 copy, ~25 ms of every API's INIT) although nothing here uses it. A v1
    model can exist only once pydantic.v1 is imported: until then the answer is "no" without
    importing it, afterwards FastAPI's own check runs, so the refusal itself is unchanged."""
    from fastapi import encoders
    from fastapi._compat import shared

    fastapi_is_v1_class = shared.is_pydantic_v1_model_class
    fastapi_is_v1_instance = shared.is_pydantic_v1_model_instance

    def is_v1_class(cls: Any) -> bool:
        return "pydantic.v1" in sys.modules and fastapi_is_v1_class(cls)

    def is_v1_instance(obj: Any) -> bool:
        return "pydantic.v1" in sys.modules and fastapi_is_v1_instance(obj)

    # `annotation_is_pydantic_v1` (route registration) calls the class check through its module;
    # the encoder imported the instance check by name.
    shared.is_pydantic_v1_model_class = is_v1_class
    shared.is_pydantic_v1_model_instance = is_v1_instance
    encoders.is_pydantic_v1_model_instance = is_v1_instance


_check_pydantic_v1_only_once_loaded()


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read; an HTTPException so FastAPI's body parsing passes it on."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail=f"request body is larger than {MAX_BODY_BYTES} bytes")


class ErrorBody(BaseModel):
    """Every error body: a human-readable `message` (plus optional details such as `errors`)."""

    model_config = ConfigDict(extra="allow")

    message: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed JSON"},
    413: {"model": ErrorBody, "description": "body over 16 KiB"},
    422: {"model": ErrorBody, "description": "invalid input; the message names the field"},
    500: {"model": ErrorBody, "description": "internal error (never a stack trace)"},
    503: {"model": ErrorBody, "description": "a dependency is unavailable"},
}


def json_error(status_code: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """An error answer: `{"message", **extra, "requestId"}` (requestId = the correlation id)."""
    return JSONResponse(status_code=status_code, content=_error_content(message, **extra), headers=headers)


def _error_content(message: str, **extra: Any) -> dict[str, Any]:
    content = {"message": message, **extra}
    correlation_id = current_correlation_id()
    if correlation_id and "requestId" not in content:
        content["requestId"] = correlation_id
    return content


# --------------------------------------------------------------------------- correlation id

CORRELATION_ID_HEADER = "X-Correlation-Id"
# The id itself (its pattern, the current one, binding it to the logger) is written once in
# functions.common.observability, which the non-HTTP functions share; kept here under its old name.
_correlation_id = observability._correlation_id


def correlation_id_of(scope: Mapping[str, Any]) -> str:
    """The request's correlation id: a well-formed X-Correlation-Id header, else API Gateway's
    request id, else the Lambda request id, else a new UUID."""
    header = _header(scope, CORRELATION_ID_HEADER.lower().encode())
    if header and (from_client := valid_correlation_id(header.decode("latin-1"))):
        return from_client
    event = scope.get("aws.event")
    if isinstance(event, dict) and (
        from_gateway := valid_correlation_id((event.get("requestContext") or {}).get("requestId"))
    ):
        return from_gateway
    return valid_correlation_id(getattr(scope.get("aws.context"), "aws_request_id", None)) or str(uuid.uuid4())


# --------------------------------------------------------------------------- validation errors


def _field_name(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        source, parts = parts[0], parts[1:]
        if not parts:
            return "request body" if source == "body" else source
    return ".".join(parts) or "request"


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        detail = next(err for err in errors if err.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "invalid JSON")
        return json_error(400, f"request body is not valid JSON: {reason}")
    described = []
    fields = []
    for err in errors:
        field = _field_name(err.get("loc", ()))
        fields.append(field)
        if err.get("type") == "missing" and field == "request body":
            described.append("request body is required (a JSON object)")
        elif err.get("type") == "extra_forbidden":
            described.append(f"{field}: unknown field is not allowed")
        else:
            described.append(f"{field}: {err.get('msg', 'invalid value')}")
    details = [
        {"field": field, "type": err.get("type"), "message": err.get("msg")}
        for field, err in zip(fields, errors, strict=True)
    ]
    return json_error(422, "invalid request: " + "; ".join(described), errors=details)


# --------------------------------------------------------------------------- middleware


# Time a request spent before the function saw it (API Gateway queueing, a cold start) counts
# in its latency and against the order budget, but never more than this: a wrong clock must
# not make every request look slow (or starve the inventory call).
MAX_GATEWAY_WAIT_SECONDS = 1.0


def gateway_wait_seconds(scope: Mapping[str, Any], now: float | None = None) -> float:
    """Seconds since API Gateway received this request (its requestContext.requestTimeEpoch,
    kept by Mangum in the ASGI scope), within [0, MAX_GATEWAY_WAIT_SECONDS]; 0 when unknown."""
    event = scope.get("aws.event") or {}
    epoch_ms = (event.get("requestContext") or {}).get("requestTimeEpoch") if isinstance(event, dict) else None
    if not isinstance(epoch_ms, (int, float)) or isinstance(epoch_ms, bool) or epoch_ms <= 0:
        return 0.0
    now = time.time() if now is None else now
    return min(MAX_GATEWAY_WAIT_SECONDS, max(0.0, now - epoch_ms / 1000.0))


class _ObservedRequestMiddleware:
    """Pure ASGI middleware: body size limit, last-resort error handling, RED metrics."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self.logger = get_logger(service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # latency as the caller sees it: from API Gateway's receipt of the request
        started_at = time.perf_counter() - gateway_wait_seconds(scope)
        status, started = 500, False

        correlation_id = correlation_id_of(scope)
        # Bound to the request's context (what the route's thread sees, and what producers pass
        # on), and set on the logger itself for threads outside that context (worker pools).
        unbind = bind_correlation_id(self.logger, correlation_id)
        self.logger.set_correlation_id(correlation_id)
        cors = _cors_headers(scope)
        extra_headers = [*cors, (b"x-correlation-id", correlation_id.encode())]

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
                message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
            await send(message)

        if cors and scope.get("method") == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
                        (b"access-control-allow-headers", b"Content-Type, Idempotency-Key, X-Api-Key, Authorization"),
                        (b"access-control-max-age", b"3600"),
                    ],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": b""})
            unbind()
            return

        try:
            declared = _content_length(scope)
            if declared is not None and declared > MAX_BODY_BYTES:
                await _send_json(send_wrapper, 413, _error_content(_BodyTooLarge().detail))
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > MAX_BODY_BYTES:
                        raise _BodyTooLarge()
                return message

            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLarge as exc:
            if not started:
                await _send_json(send_wrapper, 413, _error_content(exc.detail))
        except Exception:  # last resort: never a stack trace to the caller
            self.logger.exception("unhandled error", extra={"path": scope.get("path"), "method": scope.get("method")})
            if not started:
                await _send_json(send_wrapper, 500, _error_content("internal error"))
        finally:
            self._record(scope, status, (time.perf_counter() - started_at) * 1000.0)
            unbind()

    def _record(self, scope: Scope, status: int, duration_ms: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "GET")
        status_class = f"{status // 100}xx"
        put_metric(
            "HttpRequests",
            MetricUnit.Count,
            1,
            service=self.service,
            route=template,
            method=method,
            status_class=status_class,
        )
        put_metric(
            "HttpRequestDuration",
            MetricUnit.Milliseconds,
            round(duration_ms, 3),
            service=self.service,
            route=template,
            method=method,
        )


def _header(scope: Mapping[str, Any], name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)  # ASGI header values are bytes already; bytes() says so to mypy
    return None


_EXPOSED_HEADERS = b"Idempotent-Replayed, X-Correlation-Id"


def _cors_headers(scope: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    origin = _header(scope, b"origin")
    if not origin:
        return []
    try:
        from functions.common.settings import get_settings

        allowed = get_settings().cors_allow_origins
    except Exception:  # noqa: BLE001 - CORS must never break a request
        return []
    text = origin.decode("latin-1").rstrip("/")
    if "*" in allowed:
        return [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", _EXPOSED_HEADERS)]
    if text in allowed:
        return [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
            (b"access-control-expose-headers", _EXPOSED_HEADERS),
        ]
    return []


def _content_length(scope: Mapping[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- factory


def create_app(service_name: str, *, title: str | None = None) -> FastAPI:
    """A FastAPI app with Valerix error handling and RED metrics. No I/O happens here."""
    app = FastAPI(
        title=title or f"Valerix {service_name}",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        debug=False,
        responses=ERROR_RESPONSES,  # documented for every route (app.openapi() feeds the fuzz tests)
    )
    app.state.service_name = service_name
    logger = get_logger(service_name)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return json_error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(DatabaseUnavailable)
    async def _on_database_unavailable(_: Request, exc: DatabaseUnavailable) -> JSONResponse:
        # Every route of every service maps its own database being down the same way; the
        # driver's text (host, port, errno) goes to the log only.
        logger.warning("request failed: database unreachable", extra={"error": str(exc)})
        return json_error(503, f"{service_name} database unreachable, try again later")

    @app.exception_handler(ApiError)
    async def _on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        # ApiError messages are written for the caller; the cause (if any) is logged here.
        if exc.status_code >= 500:
            cause = exc.__cause__
            logger.warning(
                "request failed",
                extra={
                    "status": exc.status_code,
                    "error": exc.message,
                    "cause": f"{type(cause).__name__}: {cause}" if cause is not None else None,
                },
            )
        return json_error(exc.status_code, exc.message, **exc.extra)

    app.add_middleware(_ObservedRequestMiddleware, service=service_name)
    return app


_loops = threading.local()


def ensure_event_loop() -> asyncio.AbstractEventLoop:
    """Mangum runs the ASGI app on the calling thread's event loop; make sure there is one.

    One loop per thread, created once and reused across invocations (no deprecated implicit
    loop creation, works on any thread).
    """
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _loops.loop = loop
    asyncio.set_event_loop(loop)
    return loop


def make_api_handler(app: FastAPI, service_name: str | None = None) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point for an API Gateway (REST v1) proxy event."""
    service = str(service_name or getattr(app.state, "service_name", "api"))
    ensure_event_loop()
    mangum = Mangum(app, lifespan="off")
    # The API functions run with SnapStart on AWS: each restored environment re-seeds `random`.
    reseed_random_after_restore()

    @get_logger(service).inject_lambda_context(log_event=False)
    @get_metrics(service).log_metrics(capture_cold_start_metric=True)
    def api_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ensure_event_loop()
        return mangum(event, context)

    api_handler.app = app
    return cast(Callable[[dict[str, Any], Any], dict[str, Any]], api_handler)
