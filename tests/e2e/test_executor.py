"""The process runtime executor, driven through LocalStack's real Lambda and SQS services."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path

import pytest

from tests.process_markers import processes_named

pytestmark = pytest.mark.e2e

PROBE = Path(__file__).parent / "lambdas" / "probe.py"
ROLE = "arn:aws:iam::000000000000:role/valerix-test-probe"


def _zip(source: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(source, "probe.py")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def lam(localcloud):
    return localcloud.client("lambda", read_timeout=120)


def _create(lam, handler="probe.handler", timeout=3, code=None, memory=256) -> str:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler=handler,
        Code=code or {"ZipFile": _zip(PROBE)},
        Timeout=timeout,
        MemorySize=memory,
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def _invoke(lam, name, payload):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    return response.get("FunctionError"), json.loads(response["Payload"].read())


@pytest.fixture(scope="module")
def probe(lam):
    name = _create(lam)
    yield name
    lam.delete_function(FunctionName=name)


def test_invocation_runs_handler_in_a_separate_process(lam, probe):
    error, body = _invoke(lam, probe, {})
    assert error is None
    assert body["version"] == "v1"
    assert 0 < body["remainingMs"] <= 3000


def test_timeout_kills_the_process_and_next_invoke_gets_a_fresh_one(lam, probe):
    _, before = _invoke(lam, probe, {})
    error, body = _invoke(lam, probe, {"sleepSeconds": 10})
    assert error == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in body["errorMessage"]
    error, after = _invoke(lam, probe, {})
    assert error is None
    assert after["pid"] != before["pid"]


def _eventually(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def test_timeout_kills_every_process_the_function_started(lam, probe):
    """Children in their own session (`setsid`, start_new_session) and a double-forked
    daemon are the environment's too: none outlives the timeout."""
    marker = f"escapee-{uuid.uuid4().hex}"
    result = {}
    invoke = threading.Thread(
        target=lambda: result.update(outcome=_invoke(lam, probe, {"spawnMarker": marker, "sleepSeconds": 10}))
    )
    invoke.start()
    try:
        assert _eventually(lambda: len(processes_named(marker)) == 3), processes_named(marker)
        invoke.join(60)
        error, body = result["outcome"]
        assert error == "Unhandled" and body["errorType"] == "Sandbox.Timedout"
        assert _eventually(lambda: not processes_named(marker), timeout=5), processes_named(marker)
    finally:
        invoke.join(60)
        for pid in processes_named(marker):  # a failed run must not leave them behind
            os.kill(pid, 9)
    error, body = _invoke(lam, probe, {})
    assert error is None, body


@pytest.fixture(scope="module")
def small_probe(lam):
    name = _create(lam, timeout=10, memory=128)
    yield name
    lam.delete_function(FunctionName=name)


def test_allocating_past_memory_size_is_lambdas_out_of_memory_and_the_next_invoke_is_fresh(lam, small_probe):
    _, before = _invoke(lam, small_probe, {})
    error, body = _invoke(lam, small_probe, {"allocateMb": 64})
    assert error is None and body["allocatedMb"] == 64, body  # within MemorySize is fine
    error, body = _invoke(lam, small_probe, {"allocateMb": 256})
    assert error == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory"
    assert body["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    assert body["errorMessage"].startswith("RequestId: ")
    error, after = _invoke(lam, small_probe, {})
    assert error is None, after
    assert after["pid"] != before["pid"]


def test_memory_size_covers_the_processes_a_function_starts(lam, small_probe):
    """Two children of 80 MiB: each alone fits in 128 MiB, together they do not."""
    from valerix_localcloud.zygote import Containment

    containment = Containment("auto")  # what LocalStack, the same user, chose too
    containment.close()
    if containment.mode == "rlimit":
        pytest.skip("no memory cgroup for this user: RLIMIT_AS limits each process alone")
    error, body = _invoke(lam, small_probe, {"childrenAllocateMb": [80, 80]})
    assert error == "Unhandled", body
    assert body["errorType"] == "Runtime.OutOfMemory"
    error, body = _invoke(lam, small_probe, {"childrenAllocateMb": [40]})
    assert error is None and body["childExitCodes"] == [None], body


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_runtime_api_serves_only_its_own_environment(lam, probe):
    other = _create(lam)
    try:
        error, body = _invoke(lam, probe, {"runtimeApi": True})
        assert error is None, body
        host_port, _, secret = body["runtimeApi"].partition("/")
        assert host_port.startswith("127.0.0.1:") and len(secret) >= 32
        victim_pid = body["pid"]
        # Another environment that found the port: neither bare nor with its own secret.
        error, attack = _invoke(lam, other, {"probeRuntimeApi": host_port})
        assert error is None, attack
        assert attack["statuses"] == {"noSecret": 403, "ownSecret": 403}
        # Any other local process, guessing.
        assert _get(f"http://{host_port}/2018-06-01/runtime/invocation/next") == 403
        assert _get(f"http://{host_port}/{'A' * len(secret)}/2018-06-01/runtime/invocation/next") == 403
        # The environment itself is undisturbed: same process, next event delivered.
        error, body = _invoke(lam, probe, {})
        assert error is None and body["pid"] == victim_pid, body
    finally:
        lam.delete_function(FunctionName=other)


def test_process_exit_is_a_runtime_error_and_the_next_invoke_succeeds(lam, probe):
    error, body = _invoke(lam, probe, {"exit": True})
    assert error == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 1" in body["errorMessage"]
    error, body = _invoke(lam, probe, {})
    assert error is None and body["version"] == "v1"


def test_concurrent_invocations_run_in_parallel_environments(lam):
    name = _create(lam, timeout=10)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: _invoke(lam, name, {"sleepSeconds": 1}), range(20)))
        elapsed = time.monotonic() - started
        assert all(error is None for error, _ in results)
        assert len({body["pid"] for _, body in results}) > 1
        # Serially this would take 20 s; in parallel environments it is a few seconds.
        assert elapsed < 12, f"20 concurrent 1 s invocations took {elapsed:.1f}s"
    finally:
        lam.delete_function(FunctionName=name)


def _log_messages(localcloud, function_name, needle, timeout=20.0) -> list[str]:
    logs = localcloud.client("logs")
    deadline = time.monotonic() + timeout
    while True:
        messages = []
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{function_name}")["events"]
            messages = [event["message"] for event in events]
        except logs.exceptions.ResourceNotFoundException:
            pass
        if any(needle in m for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def test_logs_reach_cloudwatch_with_start_end_report_lines(localcloud, lam, probe):
    marker = uuid.uuid4().hex
    _invoke(lam, probe, {"marker": marker})
    messages = _log_messages(localcloud, probe, marker)
    text = "".join(messages)
    assert marker in text
    assert "START RequestId:" in text and "END RequestId:" in text
    report = [m for m in messages if m.startswith("REPORT RequestId:")]
    assert report and "Duration:" in report[-1] and "Max Memory Used:" in report[-1]


def test_invocation_metrics_reach_cloudwatch_summed_in_batches(localcloud, lam, probe):
    """AWS/Lambda Invocations keeps its Sum while LocalStack publishes it once a second
    (valerix_localcloud/patches.py) instead of once per invocation."""
    from datetime import datetime, timedelta

    name = _create(lam)
    try:
        for _ in range(6):
            error, body = _invoke(lam, name, {})
            assert error is None, body
        cloudwatch = localcloud.client("cloudwatch")
        now = datetime.now(UTC)
        deadline = time.monotonic() + 20
        while True:
            points = cloudwatch.get_metric_statistics(
                Namespace="AWS/Lambda",
                MetricName="Invocations",
                Dimensions=[{"Name": "FunctionName", "Value": name}],
                StartTime=now - timedelta(minutes=5),
                EndTime=now + timedelta(minutes=5),
                Period=600,
                Statistics=["Sum", "SampleCount"],
            )["Datapoints"]
            total = sum(p["Sum"] for p in points)
            if total >= 6 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert total == 6, points
        assert sum(p["SampleCount"] for p in points) < 6, points
    finally:
        lam.delete_function(FunctionName=name)


def test_sqs_batch_item_failure_is_redelivered_then_dead_lettered(localcloud, lam):
    sqs = localcloud.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    dlq_url = sqs.create_queue(QueueName=f"probe-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"probe-{suffix}",
        Attributes={
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = _create(lam, handler="probe.batch_handler")
    mapping = lam.create_event_source_mapping(
        EventSourceArn=queue_arn,
        FunctionName=name,
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody="poison")
        sqs.send_message(QueueUrl=queue_url, MessageBody="fine")
        deadline = time.monotonic() + 60
        dead = []
        while time.monotonic() < deadline and not dead:
            dead = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1, AttributeNames=["All"]).get("Messages", [])
        assert [m["Body"] for m in dead] == ["poison"]
        messages = _log_messages(localcloud, name, "receive=2")
        poison_attempts = [m for m in messages if m.startswith("record poison")]
        fine_attempts = [m for m in messages if m.startswith("record fine")]
        assert len(poison_attempts) >= 2, messages
        assert len(fine_attempts) == 1, messages
    finally:
        lam.delete_event_source_mapping(UUID=mapping["UUID"])
        lam.delete_function(FunctionName=name)


def test_hot_reload_applies_code_edits_at_the_next_cold_start(localcloud, lam, tmp_path_factory):
    code_dir = tmp_path_factory.mktemp("hot-reload-probe")
    shutil.copy(PROBE, code_dir / "probe.py")
    name = _create(lam, code={"S3Bucket": "hot-reload", "S3Key": str(code_dir)})
    try:
        assert _invoke(lam, name, {})[1]["version"] == "v1"
        source = (code_dir / "probe.py").read_text().replace('VERSION = "v1"', 'VERSION = "v2"')
        (code_dir / "probe.py").write_text(source)
        assert _invoke(lam, name, {})[1]["version"] == "v1", "a warm environment keeps its code"
        _invoke(lam, name, {"exit": True})  # ends the environment: the next invoke is cold
        assert _invoke(lam, name, {})[1]["version"] == "v2"
    finally:
        lam.delete_function(FunctionName=name)
