"""The shared FastAPI factory: JSON errors naming the field, 413, 500 without a trace, CORS."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, Field

from functions.common import settings
from functions.common.api import ApiError, create_app, make_api_handler
from functions.common.db import DatabaseUnavailable


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1)
    count: int = Field(ge=1, le=10)


@pytest.fixture
def handler(monkeypatch):
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "http://site.example")
    settings.reset_settings()
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
    settings.reset_settings()


def call(handler, method, path, body=None, headers=None, request_context=None):
    event = {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/json", **(headers or {})}, "multiValueHeaders": {},
        "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
        "stageVariables": None, "body": body, "isBase64Encoded": False,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "path": "/prod" + path,
                           "stage": "prod", "identity": {"sourceIp": "127.0.0.1"}, **(request_context or {})},
    }
    result = handler(event, None)
    return result["statusCode"], json.loads(result["body"]) if result.get("body") else None, {
        k.lower(): v for k, v in (result.get("headers") or {}).items()}


def test_ok_and_errors(handler):
    assert call(handler, "POST", "/things/a", json.dumps({"name": "x", "count": 2}))[:2] == (
        201, {"id": "a", "name": "x", "count": 2})
    status, body, _ = call(handler, "POST", "/things/a", json.dumps({"name": "x", "count": "2"}))
    assert status == 422 and "count" in body["message"]
    status, body, _ = call(handler, "POST", "/things/a", json.dumps({"name": "x", "count": 2, "z": 1}))
    assert status == 422 and "z" in body["message"]
    assert call(handler, "POST", "/things/a", "{oops")[0] == 400
    assert call(handler, "POST", "/things/a", "x" * 17000)[0] == 413
    status, body, _ = call(handler, "POST", "/things/boom", json.dumps({"name": "x", "count": 2}))
    assert status == 500 and body == {"message": "internal error"}
    assert call(handler, "POST", "/things/conflict", json.dumps({"name": "x", "count": 2}))[:2] == (
        409, {"message": "taken", "reason": "exists"})
    assert call(handler, "GET", "/nowhere")[:2] == (404, {"message": "Not Found"})


def test_cors(handler):
    _, _, headers = call(handler, "GET", "/nowhere", headers={"Origin": "http://site.example"})
    assert headers["access-control-allow-origin"] == "http://site.example"
    _, _, headers = call(handler, "GET", "/nowhere", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in headers
    status, _, headers = call(handler, "OPTIONS", "/things/a", headers={
        "Origin": "http://site.example", "Access-Control-Request-Method": "POST"})
    assert status == 204 and "Idempotency-Key" in headers["access-control-allow-headers"]


def test_database_down_is_a_503_naming_the_service_on_every_route(handler):
    status, body, _ = call(handler, "POST", "/things/dbdown", json.dumps({"name": "a", "count": 1}))
    assert status == 503
    assert body == {"message": "unit database unavailable, try again later"}


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
    call(handler, "POST", "/things/a", json.dumps({"name": "x", "count": 2}),
         request_context={"requestTimeEpoch": int((time.time() - 0.6) * 1000)})
    durations = [json.loads(line)["HttpRequestDuration"] for line in capsys.readouterr().out.splitlines()
                 if '"HttpRequestDuration"' in line]
    assert len(durations) == 1
    value = durations[0][0] if isinstance(durations[0], list) else durations[0]
    assert value >= 600, value
