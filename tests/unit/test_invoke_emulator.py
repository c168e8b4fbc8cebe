"""The shared Lambda Invoke emulator (component tests' and the bench baseline's reserve function)
answers boto3's `invoke` the way Lambda does: payload, FunctionError, unknown function."""

from __future__ import annotations

import json
import socket
import threading
import time

import boto3
import pytest
import uvicorn
from botocore.config import Config

from valerix_localcloud import invoke_emulator


def _echo(event, context):
    return {"got": event, "function": context.function_name}


def _boom(event, context):
    raise ValueError("the handler failed")


@pytest.fixture(scope="module")
def lam():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = invoke_emulator.invoke_app({"echo": _echo, "boom": _boom, "lazy": "tests.unit.test_invoke_emulator:_echo"})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )
    server.should_exit = True
    thread.join(timeout=5)


def test_the_handlers_return_value_is_the_payload(lam):
    response = lam.invoke(FunctionName="echo", Payload=json.dumps({"action": "ping"}).encode())
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"got": {"action": "ping"}, "function": "echo"}


def test_a_function_arn_reaches_the_same_function(lam):
    arn = "arn:aws:lambda:us-east-1:123456789012:function:echo"
    response = lam.invoke(FunctionName=arn, Payload=b"{}")
    assert json.loads(response["Payload"].read())["function"] == "echo"


def test_an_exception_is_an_unhandled_function_error(lam):
    response = lam.invoke(FunctionName="boom", Payload=b"{}")
    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read()) == {"errorType": "ValueError", "errorMessage": "the handler failed"}


def test_an_unknown_function_is_resource_not_found(lam):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="nobody", Payload=b"{}")


def test_a_handler_named_by_module_and_attribute_is_imported_on_first_use(lam):
    response = lam.invoke(FunctionName="lazy", Payload=json.dumps([1, 2]).encode())
    assert json.loads(response["Payload"].read()) == {"got": [1, 2], "function": "lazy"}


def test_a_handler_spec_without_an_attribute_is_refused():
    with pytest.raises(ValueError, match="module:attribute"):
        invoke_emulator.resolve("functions.inventory.handler")
