"""`make logs` and `make status` against the running local cloud."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from infra.outputs import GREMLIN_FUNCTION_NAME, ORDER_API_FUNCTION_NAME
from tests.sigint import with_sigint_ignored
from valerix_localcloud.postgres import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (?P<function>\S+)\s* \| (?P<correlation>\S+) \| (?P<rest>.*)$")


def _env(**extra: str) -> dict:
    return {**os.environ, **extra}


def _make(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _put(cloud, function: str, *messages: str) -> None:
    """Log lines of our own in a function's log group (own stream), as a function would write."""
    logs = cloud.client("logs")
    group, stream = f"/aws/lambda/{function}", f"e2e-{uuid.uuid4().hex}"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)],
    )


def _powertools(message: str, **extra) -> str:
    return json.dumps(
        {"level": "INFO", "location": "e2e:1", "message": message, "service": "order", "timestamp": "now", **extra}
    )


def _parsed(stdout: str) -> list[dict]:
    return [m.groupdict() for m in map(LINE.match, stdout.splitlines()) if m]


def test_make_logs_shows_one_function_with_its_correlation_ids(localcloud):
    order_api = localcloud.stack[ORDER_API_FUNCTION_NAME]
    marker = uuid.uuid4().hex
    _put(
        localcloud,
        order_api,
        _powertools(f"with id {marker}", correlation_id=f"corr-{marker}"),
        _powertools(f"without id {marker}"),
    )
    # A real request, so the inventory function has fresh lines that the filter must leave out.
    assert httpx.get(f"{localcloud.api_url}/products", timeout=30).status_code == 200

    result = _make("logs", "FN=order-api", "LOGS_ARGS=--no-follow --since 5m --color never")
    assert result.returncode == 0, result.stderr
    lines = _parsed(result.stdout)
    assert lines and {line["function"] for line in lines} == {"order-api"}
    assert {"function": "order-api", "correlation": f"corr-{marker}", "rest": f"INFO    with id {marker}"} in lines
    assert {"function": "order-api", "correlation": "-", "rest": f"INFO    without id {marker}"} in lines


def test_make_logs_shows_every_function_by_default(localcloud):
    assert httpx.get(f"{localcloud.api_url}/products", timeout=30).status_code == 200
    assert httpx.get(f"{localcloud.api_url}/gremlin", timeout=30).status_code == 200
    deadline = time.monotonic() + 60
    while True:  # LocalStack ships Lambda logs a moment after the invocation
        result = _make("logs", "LOGS_ARGS=--no-follow --since 5m --color never")
        assert result.returncode == 0, result.stderr
        functions = {line["function"] for line in _parsed(result.stdout)}
        if {"inventory-api", "gremlin"} <= functions or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {"inventory-api", "gremlin"} <= functions
    assert not [line for line in _parsed(result.stdout) if '"_aws"' in line["rest"]]  # EMF is metrics, hidden


def test_make_logs_rejects_an_unknown_function(localcloud):
    result = _make("logs", "FN=order", "LOGS_ARGS=--no-follow")
    assert result.returncode != 0
    assert "no function 'order' in the stack; choose from:" in result.stderr and "order-api" in result.stderr


@pytest.mark.parametrize(
    "sigint_ignored_by_parent", [False, True], ids=["ctrl-c", "ctrl-c-with-sigint-ignored-at-start"]
)
def test_make_logs_follows_new_lines_until_ctrl_c(localcloud, sigint_ignored_by_parent):
    gremlin = localcloud.stack[GREMLIN_FUNCTION_NAME]
    command = [sys.executable, "-m", "valerix_localcloud", "logs", "--function", "gremlin", "--since", "1s"]
    command += ["--color", "never"]
    if sigint_ignored_by_parent:
        command = with_sigint_ignored(command)
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        marker = uuid.uuid4().hex
        _put(localcloud, gremlin, _powertools(f"followed {marker}", correlation_id=marker))
        deadline = time.monotonic() + 60
        seen = None
        while seen is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if marker in line:
                seen = line
        assert seen is not None, process.stderr.read() if process.poll() is not None else "no line"
        assert LINE.match(seen.rstrip("\n")).groupdict() == {
            "function": "gremlin",
            "correlation": marker,
            "rest": f"INFO    followed {marker}",
        }
        assert process.poll() is None  # still following
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert "Traceback" not in process.stderr.read()


def _rows(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in stdout.splitlines()[1:]:
        match = re.match(r"^(\S.*?|\s+\S+)\s{2,}(up|down|idle|)\s+(.*)$", line)
        if match:
            rows[match.group(1).strip()] = (match.group(2), match.group(3))
    return rows


def test_make_status_shows_each_component_with_state_and_url(localcloud):
    assert httpx.get(f"{localcloud.api_url}/products", timeout=30).status_code == 200
    localcloud.client("dynamodb").list_tables()
    result = _make("status")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _rows(result.stdout)
    assert rows["LocalStack"][0] == "up" and rows["LocalStack"][1].startswith(localcloud.endpoint_url)
    for service in ("apigateway", "lambda", "sqs", "dynamodb", "logs", "s3", "ssm", "secretsmanager"):
        assert rows[service] == ("up", "(running)"), service
    assert rows["DynamoDB Local"][0] == "up" and rows["DynamoDB Local"][1].startswith("http://127.0.0.1:")
    for db in localcloud.outputs["databases"].values():
        assert rows[db["dbname"]][0] == "up"
        assert rows[db["dbname"]][1].startswith(f"postgresql://{db['username']}@127.0.0.1:{db['port']}/{db['dbname']}")
        assert db["password"] not in result.stdout
    assert rows["exporter"][0] == "up" and rows["exporter"][1].startswith(localcloud.metrics_url)
    state, detail = rows["Prometheus"]
    assert state == "up" and detail.startswith(localcloud.outputs["prometheus_url"])
    assert re.search(r"\d+ rules, exporter target 1/1 up, firing: ", detail), detail
    state, detail = rows["Lambda environments"]
    assert state == "up" and int(re.match(r"\((\d+) running\)", detail).group(1)) >= 1
    assert rows["API"][1].startswith(localcloud.api_url)
    assert rows["dashboard"][1].startswith(localcloud.web_url)


def test_make_status_reports_a_component_that_does_not_answer(localcloud):
    # The same cloud seen with the exporter expected on a port where nothing listens.
    result = _make("status", VALERIX_EXPORTER_PORT=str(free_port()))
    assert result.returncode != 0  # make turns the command's 1 into its own 2
    state, detail = _rows(result.stdout)["exporter"]
    assert state == "down" and "does not answer" in detail
    assert _rows(result.stdout)["LocalStack"][0] == "up"


def test_make_status_reports_a_prometheus_that_does_not_answer(localcloud):
    result = _make("status", VALERIX_PROMETHEUS_PORT=str(free_port()))
    assert result.returncode != 0
    state, detail = _rows(result.stdout)["Prometheus"]
    assert state == "down" and "does not answer" in detail
