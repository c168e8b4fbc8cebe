"""The correlation id travels with an order: the contracts carry it, consumers bind it per record
and clear it afterwards, the reserve function binds the one it was sent (docs/ARCHITECTURE.md).
The whole chain through real handlers: tests/component/test_correlation_flow.py; on the local cloud:
tests/e2e/test_correlation.py."""

from __future__ import annotations

import io
import json
import logging
import threading
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from functions.common import queue
from functions.common.contracts import (
    CORRELATION_ID_ATTRIBUTE,
    ReserveRequest,
    correlation_attributes,
    parse_inventory_command,
)
from functions.common.observability import (
    correlation_scope,
    current_correlation_id,
    get_logger,
    invocation_correlation_id,
    traced,
    tracing_enabled,
    valid_correlation_id,
)

HOSTILE = ["a b", "x" * 129, "abc\n", '"}{"level":"ERROR', "\u0000", "-leading-dash", "", "ü-umlaut"]


@pytest.fixture
def log_lines():
    """Every Powertools JSON line of the services involved, parsed."""
    stream = io.StringIO()
    loggers = [get_logger(name) for name in ("unit-correlation", "inventory", "order")]
    handlers = [logging.StreamHandler(stream) for _ in loggers]
    for logger, handler in zip(loggers, handlers, strict=True):  # each with its own logger's format (its service)
        handler.setFormatter(logger.registered_formatter)
    levels = [logger.log_level for logger in loggers]
    for logger, handler in zip(loggers, handlers, strict=True):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for logger, handler, level in zip(loggers, handlers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


# ------------------------------------------------------------------------------ the id itself


def test_well_formed_ids_are_taken_and_hostile_ones_refused():
    for good in ("abc", "3f2a-11:ee.09_x", "A" * 128):
        assert valid_correlation_id(good) == good
    for bad in [*HOSTILE, None, 42, b"abc"]:
        assert valid_correlation_id(bad) is None, bad


def test_an_invocation_falls_back_to_its_lambda_request_id():
    context = SimpleNamespace(aws_request_id="lambda-req-1")
    assert invocation_correlation_id("sent-1", context) == "sent-1"
    assert invocation_correlation_id("a b", context) == "lambda-req-1"
    assert invocation_correlation_id(None, None) is None


# ------------------------------------------------------------------------------ contracts


def test_the_reserve_request_carries_the_id_and_it_stays_optional():
    fields = {"action": "reserve", "orderId": "o-1", "productId": "widget", "quantity": 1}
    assert parse_inventory_command({**fields, "correlationId": "corr-1"}).correlationId == "corr-1"
    assert parse_inventory_command(fields).correlationId is None  # an older producer still works
    request = ReserveRequest(**fields, correlationId="corr-2")
    assert parse_inventory_command(request.model_dump(exclude_none=True)) == request


@pytest.mark.parametrize("bad", [*HOSTILE, 7])
def test_a_malformed_id_in_a_reserve_request_is_refused(bad):
    with pytest.raises(ValidationError) as info:
        parse_inventory_command(
            {"action": "reserve", "orderId": "o-1", "productId": "widget", "quantity": 1, "correlationId": bad}
        )
    assert "correlationId" in str(info.value)


def test_queue_messages_carry_the_id_as_a_string_attribute():
    assert correlation_attributes("corr-3") == {
        CORRELATION_ID_ATTRIBUTE: {"DataType": "String", "StringValue": "corr-3"}
    }
    assert correlation_attributes(None) == {}


# ------------------------------------------------------------------------------ binding


def test_a_scope_binds_the_id_to_log_lines_and_restores_the_outer_one(log_lines):
    logger = get_logger("unit-correlation")
    with correlation_scope(logger, "outer-1"):
        with correlation_scope(logger, "inner-1"):
            logger.info("inner")
            assert current_correlation_id() == "inner-1"
        logger.info("outer again")
        assert current_correlation_id() == "outer-1"
    logger.info("after")
    assert current_correlation_id() is None
    ids = {line["message"]: line.get("correlation_id") for line in log_lines()}
    assert ids == {"inner": "inner-1", "outer again": "outer-1", "after": None}


# ------------------------------------------------------------------------------ SQS consumers


def _record(message_id: str, body: dict, correlation_id: str | None = None) -> dict:
    attributes = (
        {}
        if correlation_id is None
        else {
            CORRELATION_ID_ATTRIBUTE: {
                "stringValue": correlation_id,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        }
    )
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
        "awsRegion": "us-east-1",
    }


def test_each_record_of_a_batch_logs_under_its_own_id_and_nothing_lingers(log_lines):
    logger = get_logger("unit-correlation")
    started = threading.Barrier(3, timeout=10)  # three records at once on three worker threads
    seen: dict[str, str | None] = {}

    def handle(record):
        started.wait()
        body = json.loads(record.body)
        seen[body["n"]] = current_correlation_id()
        logger.info("handled", extra={"n": body["n"]})
        return "ok"

    event = {
        "Records": [
            _record("m-1", {"n": "1"}, "corr-a"),
            _record("m-2", {"n": "2"}, "corr-b"),
            _record("m-3", {"n": "3"}),
        ]
    }
    assert queue.process_batch(event, None, handle, "unit-correlation", logger) == {"batchItemFailures": []}
    assert seen == {"1": "corr-a", "2": "corr-b", "3": "m-3"}  # no attribute: the SQS message id
    lines = {line["n"]: line.get("correlation_id") for line in log_lines() if line["message"] == "handled"}
    assert lines == {"1": "corr-a", "2": "corr-b", "3": "m-3"}

    # Pool threads are reused by the next batch: every one of them is clean again.
    workers = queue._record_workers()
    size = queue.MAX_CONCURRENT_RECORDS
    everyone = threading.Barrier(size, timeout=10)

    def leftover():
        everyone.wait()  # holds each worker, so all of them answer
        return current_correlation_id(), logger.thread_safe_get_current_keys().get("correlation_id")

    assert {f.result() for f in [workers.submit(leftover) for _ in range(size)]} == {(None, None)}


@pytest.mark.parametrize("bad", HOSTILE)
def test_a_malformed_attribute_is_not_logged_the_message_id_is(bad):
    logger = get_logger("unit-correlation")
    seen = []
    queue.process_batch(
        {"Records": [_record("m-9", {}, bad)]},
        None,
        lambda record: seen.append(current_correlation_id()),
        "unit-correlation",
        logger,
    )
    assert seen == ["m-9"]


def test_a_failing_record_logs_its_failure_under_its_id(log_lines, monkeypatch):
    logger = get_logger("unit-correlation")
    monkeypatch.setattr(queue, "_back_off", lambda *args: None)  # no SQS here

    def handle(record):
        raise RuntimeError("database down (test)")

    response = queue.process_batch(
        {"Records": [_record("m-4", {}, "corr-fail")]}, None, handle, "unit-correlation", logger
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-4"}]}
    failure = next(line for line in log_lines() if line["message"] == "queue record failed")
    assert failure["correlation_id"] == "corr-fail" and failure["message_id"] == "m-4"
    assert failure["error"] == "database down (test)"


# ------------------------------------------------------------------------------ reserve function


def test_the_reserve_function_logs_under_the_id_it_was_sent(log_lines, monkeypatch):
    from functions.inventory import handler, reserve_api, service

    def answer(payload):
        service.logger.info("answering", extra={"order_id": payload.get("orderId")})
        return {"statusCode": 201, "status": "RESERVED"}

    monkeypatch.setattr(reserve_api, "answer_command", answer)
    context = SimpleNamespace(
        aws_request_id="lambda-req-7",
        function_name="inventory-reserve",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:::function:x",
    )
    handler.reserve_handler({"action": "reserve", "orderId": "o-7", "correlationId": "corr-7"}, context)
    handler.reserve_handler({"action": "reserve", "orderId": "o-8", "correlationId": "not ok"}, context)
    handler.reserve_handler({"action": "reserve", "orderId": "o-9"}, context)
    ids = {line["order_id"]: line.get("correlation_id") for line in log_lines() if line["message"] == "answering"}
    assert ids == {"o-7": "corr-7", "o-8": "lambda-req-7", "o-9": "lambda-req-7"}
    assert current_correlation_id() is None


# ------------------------------------------------------------------------------ tracer


def test_tracing_is_off_outside_lambda_and_where_disabled(monkeypatch):
    from functions.common.settings import Runtime, runtime

    in_lambda = {"LAMBDA_TASK_ROOT": "/var/task"}
    assert Runtime.from_env({**in_lambda, "POWERTOOLS_TRACE_DISABLED": "false"}).tracing
    assert not Runtime.from_env({**in_lambda, "POWERTOOLS_TRACE_DISABLED": "true"}).tracing  # target=local
    assert not Runtime.from_env({**in_lambda, "AWS_SAM_LOCAL": "true"}).tracing
    assert not Runtime.from_env({}).tracing
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    runtime.cache_clear()
    assert tracing_enabled()  # what the process's own environment says


def test_traced_handlers_are_untouched_where_tracing_is_off(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")

    def handler(event, context):
        return {"echo": event}

    assert traced(handler) is handler


def test_traced_handlers_run_under_the_powertools_tracer_in_lambda(monkeypatch):
    """With tracing on, the handler is wrapped by Tracer.capture_lambda_handler, responses are
    kept out of traces and only botocore is patched (nothing is patched for real here)."""
    from aws_lambda_powertools import Tracer

    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    patched, captured = [], []
    real = Tracer.capture_lambda_handler

    def spy(self, lambda_handler=None, capture_response=None, capture_error=None):
        captured.append(capture_response)
        return real(self, lambda_handler, capture_response=capture_response, capture_error=capture_error)

    monkeypatch.setattr(Tracer, "patch", lambda self, modules=None: patched.append(modules))
    monkeypatch.setattr(Tracer, "capture_lambda_handler", spy)

    def handler(event, context):
        return {"echo": event}

    try:
        wrapped = traced(handler)
    finally:
        Tracer._reset_config()
    assert wrapped is not handler and wrapped.__name__ == "handler"
    assert captured == [False] and patched == [["botocore"]]
