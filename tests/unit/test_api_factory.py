"""The shared FastAPI factory: JSON errors naming the field, 413, 500 without a trace, CORS."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, Field

from functions.common import settings
from functions.common.api import ApiError, create_app, make_api_handler
from functions.common.db import DatabaseUnavailable
from valerix_localcloud.invoke_emulator import lambda_context


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1)
    count: int = Field(ge=1, le=10)


@pytest.fixture
def handler(monkeypatch):
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "http://site.example")
    settings.get_settings.cache_clear()
    app = create_app("unit")

    @app.post("/things/{thing_id}", status_code=201)
    def create(thing_id: str, body: Body):
        if thing_id == "boom":
            raise RuntimeError("secret internals")
        if thing_id == "conflict":
            raise ApiError(409, "taken", reason="exists")
        if thing_id == "dbdown":
            raise DatabaseUnavailable("cannot connect to the database: refused")
        return {"id": thing_id, **body.model_dump()}

    yield make_api_handler(app)
    settings.get_settings.cache_clear()


def call(handler, method, path, body=None, headers=None, request_context=None):
    event = {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "body": body,
        "isBase64Encoded": False,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": "/prod" + path,
            "stage": "prod",
            "identity": {"sourceIp": "127.0.0.1"},
            **(request_context or {}),
        },
    }
    result = handler(event, lambda_context("valerix-unit"))  # what the Lambda runtime passes
    return (
        result["statusCode"],
        json.loads(result["body"]) if result.get("body") else None,
        {k.lower(): v for k, v in (result.get("headers") or {}).items()},
    )


def test_ok_and_errors(handler):
    assert call(handler, "POST", "/things/a", json.dumps({"name": "x", "count": 2}))[:2] == (
        201,
        {"id": "a", "name": "x", "count": 2},
    )
    status, body, _ = call(handler, "POST", "/things/a", json.dumps({"name": "x", "count": "2"}))
    assert status == 422 and "count" in body["message"]
    status, body, _ = call(handler, "POST", "/things/a", json.dumps({"name": "x", "count": 2, "z": 1}))
    assert status == 422 and "z" in body["message"]
    assert call(handler, "POST", "/things/a", "{oops")[0] == 400
    assert call(handler, "POST", "/things/a", "x" * 17000)[0] == 413
    status, body, _ = call(handler, "POST", "/things/boom", json.dumps({"name": "x", "count": 2}))
    assert status == 500 and without_request_id(body) == {"message": "internal error"}
    assert "secret internals" not in json.dumps(body)
    status, body, _ = call(handler, "POST", "/things/conflict", json.dumps({"name": "x", "count": 2}))
    assert (status, without_request_id(body)) == (409, {"message": "taken", "reason": "exists"})
    status, body, _ = call(handler, "GET", "/nowhere")
    assert (status, without_request_id(body)) == (404, {"message": "Not Found"})


def without_request_id(body: dict) -> dict:
    assert body["requestId"], body  # every error body carries the correlation id
    return {k: v for k, v in body.items() if k != "requestId"}


def test_cors(handler):
    _, _, headers = call(handler, "GET", "/nowhere", headers={"Origin": "http://site.example"})
    assert headers["access-control-allow-origin"] == "http://site.example"
    _, _, headers = call(handler, "GET", "/nowhere", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in headers
    status, _, headers = call(
        handler,
        "OPTIONS",
        "/things/a",
        headers={"Origin": "http://site.example", "Access-Control-Request-Method": "POST"},
    )
    assert status == 204 and "Idempotency-Key" in headers["access-control-allow-headers"]


def test_database_down_is_a_503_naming_the_service_on_every_route(handler):
    status, body, _ = call(handler, "POST", "/things/dbdown", json.dumps({"name": "a", "count": 1}))
    assert status == 503
    assert without_request_id(body) == {"message": "unit database unreachable, try again later"}
    assert "refused" not in json.dumps(body)  # the driver's text stays in the log


ERROR_CASES = [
    ("POST", "/things/boom", json.dumps({"name": "x", "count": 2}), 500),
    ("POST", "/things/dbdown", json.dumps({"name": "x", "count": 2}), 503),
    ("POST", "/things/conflict", json.dumps({"name": "x", "count": 2}), 409),
    ("POST", "/things/a", json.dumps({"name": "x", "count": 0}), 422),
    ("POST", "/things/a", "{oops", 400),
    ("POST", "/things/a", "x" * 17000, 413),
    ("GET", "/nowhere", None, 404),
    ("DELETE", "/things/a", None, 405),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), ERROR_CASES, ids=[f"{c[3]}" for c in ERROR_CASES])
def test_every_error_body_carries_the_gateway_request_id(handler, method, path, body, status):
    got, reply, headers = call(handler, method, path, body, request_context={"requestId": "gw-req-42"})
    assert got == status
    assert reply["requestId"] == "gw-req-42"
    assert headers["x-correlation-id"] == "gw-req-42"


def test_a_well_formed_correlation_header_wins_and_a_malformed_one_is_ignored(handler):
    _, body, headers = call(
        handler,
        "GET",
        "/nowhere",
        headers={"X-Correlation-Id": "shop-7f3a.trace:1"},
        request_context={"requestId": "gw-req-43"},
    )
    assert body["requestId"] == headers["x-correlation-id"] == "shop-7f3a.trace:1"
    for hostile in ("a b", "x" * 200, '"}{"level":"ERROR', "\u0000", "-leading-dash"):
        _, body, _ = call(
            handler,
            "GET",
            "/nowhere",
            headers={"X-Correlation-Id": hostile},
            request_context={"requestId": "gw-req-44"},
        )
        assert body["requestId"] == "gw-req-44", hostile


def test_successful_answers_carry_the_correlation_header_not_a_body_field(handler):
    status, body, headers = call(
        handler, "POST", "/things/a", json.dumps({"name": "x", "count": 2}), request_context={"requestId": "gw-req-45"}
    )
    assert status == 201 and "requestId" not in body and headers["x-correlation-id"] == "gw-req-45"


def test_logs_of_a_request_carry_its_correlation_id(handler):
    import io
    import logging

    from functions.common.observability import get_logger

    logger = get_logger("unit")
    stream = io.StringIO()
    log_handler = logging.StreamHandler(stream)
    log_handler.setFormatter(logger.registered_formatter)
    logger.addHandler(log_handler)
    try:
        call(
            handler,
            "POST",
            "/things/dbdown",
            json.dumps({"name": "a", "count": 1}),
            request_context={"requestId": "gw-req-46"},
        )
    finally:
        logger.removeHandler(log_handler)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    failure = next(r for r in records if "database unreachable" in r["message"])
    assert failure["correlation_id"] == "gw-req-46"
    assert "refused" in failure["error"]  # the detail is in the log


def test_gateway_wait_is_read_from_the_event_and_bounded():
    from functions.common.api import MAX_GATEWAY_WAIT_SECONDS, gateway_wait_seconds

    def scope(epoch_ms):
        return {"aws.event": {"requestContext": {"requestTimeEpoch": epoch_ms}}}

    assert gateway_wait_seconds(scope(99_500), now=100.0) == 0.5
    assert gateway_wait_seconds(scope(103_000), now=100.0) == 0.0  # a clock ahead of ours
    assert gateway_wait_seconds(scope(10_000), now=100.0) == MAX_GATEWAY_WAIT_SECONDS  # far behind
    assert gateway_wait_seconds({}, now=100.0) == 0.0
    assert gateway_wait_seconds(scope("soon"), now=100.0) == 0.0


def test_request_duration_counts_from_the_gateway_receipt(handler, capsys):
    """The latency metric is what the caller waits: time queued before the function counts."""
    import time

    capsys.readouterr()
    call(
        handler,
        "POST",
        "/things/a",
        json.dumps({"name": "x", "count": 2}),
        request_context={"requestTimeEpoch": int((time.time() - 0.6) * 1000)},
    )
    durations = [
        json.loads(line)["HttpRequestDuration"]
        for line in capsys.readouterr().out.splitlines()
        if '"HttpRequestDuration"' in line
    ]
    assert len(durations) == 1
    value = durations[0][0] if isinstance(durations[0], list) else durations[0]
    assert value >= 600, value
