"""The exporter against moto's CloudWatch Logs and SQS: incremental following, checkpoints,
restart without double counting, late events, new log groups, queue depths, HTTP endpoints."""

from __future__ import annotations

import contextlib
import json
import shutil
import time

import boto3
import pytest
import requests
from moto import mock_aws

from tests.obs_emf_samples import traffic_lines
from valerix_exporter.app import Config, Exporter

# moto only: fake credentials, never a real AWS profile
pytestmark = pytest.mark.usefixtures("fake_aws_credentials")

ORDER_GROUP = "/aws/lambda/valerix-order-api"
INVENTORY_GROUP = "/aws/lambda/valerix-inventory-api"


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def put(logs, group: str, lines: list[str], stream: str = "2025/11/21/[$LATEST]abc", ts: int | None = None):
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = ts or int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
    )


DASHBOARD = "http://valerix-web-1a2b.s3-website.localhost:4566"


def make(session, state_dir, **kw) -> Exporter:
    return Exporter(Config(state_dir=str(state_dir), port=0, host="127.0.0.1", **kw), session=session)


def counter(exporter: Exporter, family: str, **where) -> float:
    with exporter.lock:
        fam = exporter.store.families.get(family)
        if fam is None:
            return 0.0
        total = 0.0
        for labels, value in fam.series.items():
            d = dict(labels)
            if all(d.get(k) == v for k, v in where.items()):
                total += value if fam.kind == "counter" else value[2] if fam.kind == "histogram" else value[0]
        return total


def test_follows_incrementally_and_restart_never_double_counts(aws, tmp_path):
    logs = aws.client("logs")
    traffic = traffic_lines()
    put(logs, ORDER_GROUP, ["START RequestId: x", *traffic.lines])
    state = tmp_path / "state"

    exporter = make(aws, state)
    assert exporter.poll_once() == len(traffic.lines) + 1
    confirmed = counter(exporter, "valerix_order_outcomes", status="CONFIRMED")
    assert confirmed == traffic.order_statuses["CONFIRMED"]
    order_count = counter(exporter, "valerix_http_request_duration_seconds", service="order")
    assert order_count == len(traffic.order_durations_ms)
    assert exporter.poll_once() == 0  # nothing new: the overlap re-read is deduplicated
    assert counter(exporter, "valerix_exporter_log_events", result="duplicate") > 0
    exporter.close()

    # restart: same totals, nothing read twice
    exporter = make(aws, state)
    clock = with_fake_clock(exporter)
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == confirmed
    assert exporter.poll_once() == 0
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == confirmed
    assert counter(exporter, "valerix_http_request_duration_seconds", service="order") == order_count

    # more traffic in a second stream (another execution environment) is read exactly once
    more = traffic_lines(confirmed=2, queued=0, rejected=0, order_ms=(30.0,))
    put(logs, ORDER_GROUP, more.lines, stream="2025/11/21/[$LATEST]def")
    clock.now += 3  # the group was idle: polled again after --idle-poll-seconds
    assert exporter.poll_once() == len(more.lines)
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == confirmed + 2
    exporter.close()
    exporter = make(aws, state)
    exporter.poll_once()
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == confirmed + 2
    exporter.close()


def test_crash_between_polls_recounts_exactly_once(aws, tmp_path):
    """State and checkpoints are one atomic snapshot: losing the last one loses neither alone."""
    logs = aws.client("logs")
    put(logs, ORDER_GROUP, traffic_lines(confirmed=1, queued=0, rejected=0).lines)
    state = tmp_path / "state"
    exporter = make(aws, state)
    exporter.poll_once()
    exporter.close()
    saved = tmp_path / "saved.json"
    shutil.copy(state / "state.json", saved)

    exporter = make(aws, state)
    put(logs, ORDER_GROUP, traffic_lines(confirmed=4, queued=0, rejected=0).lines, stream="s2")
    exporter.poll_once()
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 5
    exporter.close()
    # "crash" before that last snapshot reached the disk: the previous one is what is left
    shutil.copy(saved, state / "state.json")
    exporter = make(aws, state)
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 1
    exporter.poll_once()
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 5
    assert not list(state.glob("*.tmp"))
    exporter.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def with_fake_clock(exporter: Exporter) -> FakeClock:
    clock = FakeClock()
    exporter.follower.clock = clock
    return clock


def count_calls(client) -> dict[str, int]:
    calls: dict[str, int] = {}

    def record(event_name, **_):
        operation = event_name.rsplit(".", 1)[-1]
        calls[operation] = calls.get(operation, 0) + 1

    client.meta.events.register("before-call.cloudwatch-logs.*", record)
    return calls


def test_late_events_within_the_overlap_are_counted_once(aws, tmp_path):
    logs = aws.client("logs")
    now = int(time.time() * 1000)
    put(logs, ORDER_GROUP, traffic_lines(confirmed=1, queued=0, rejected=0).lines, stream="fast", ts=now)
    exporter = make(aws, tmp_path / "state", overlap_seconds=60, recent_overlap_seconds=2, deep_poll_seconds=10)
    clock = with_fake_clock(exporter)
    exporter.poll_once()
    # ingested now, but stamped 20 s before the newest event already seen
    put(logs, ORDER_GROUP, traffic_lines(confirmed=2, queued=0, rejected=0).lines, stream="slow", ts=now - 20_000)
    clock.now += 1
    exporter.poll_once()  # the first re-read after the initial one covers the whole overlap
    clock.now += 1
    exporter.poll_once()
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 3

    # a late event arriving between deep polls: not seen by the short re-reads, counted once by
    # the next deep poll, and not again by the ones after it
    put(logs, ORDER_GROUP, traffic_lines(confirmed=4, queued=0, rejected=0).lines, stream="slower", ts=now - 30_000)
    clock.now += 1
    exporter.poll_once()
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 3
    clock.now += 10
    exporter.poll_once()
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 7
    clock.now += 10
    exporter.poll_once()
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 7
    exporter.close()


def test_idle_groups_and_discovery_are_polled_less_often(aws, tmp_path):
    logs = aws.client("logs")
    put(logs, ORDER_GROUP, traffic_lines(confirmed=1, queued=0, rejected=0).lines)
    exporter = make(aws, tmp_path / "state", discover_seconds=30, idle_poll_seconds=3)
    clock = with_fake_clock(exporter)
    calls = count_calls(exporter.logs)
    exporter.poll_once()
    assert calls == {"DescribeLogGroups": 1, "FilterLogEvents": 1}
    clock.now += 1
    exporter.poll_once()  # nothing new: the group becomes idle
    clock.now += 1
    exporter.poll_once()
    assert calls == {"DescribeLogGroups": 1, "FilterLogEvents": 2}
    clock.now += 2
    put(logs, ORDER_GROUP, traffic_lines(confirmed=2, queued=0, rejected=0).lines)
    exporter.poll_once()  # 3 s after its last poll: polled, busy again
    assert calls["FilterLogEvents"] == 3 and counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 3
    clock.now += 1
    exporter.poll_once()
    assert calls["FilterLogEvents"] == 4
    assert calls["DescribeLogGroups"] == 1
    clock.now += 30
    exporter.poll_once()
    assert calls["DescribeLogGroups"] == 2
    exporter.close()


def test_new_log_groups_are_picked_up_and_prefix_is_respected(aws, tmp_path):
    logs = aws.client("logs")
    put(logs, ORDER_GROUP, traffic_lines(confirmed=1, queued=0, rejected=0).lines)
    put(logs, "/other/app", traffic_lines(confirmed=7, queued=0, rejected=0).lines)
    exporter = make(aws, tmp_path / "state", log_groups=["/aws/lambda/not-yet-there"])
    clock = with_fake_clock(exporter)
    exporter.poll_once()
    assert exporter.follower.known == ["/aws/lambda/not-yet-there", ORDER_GROUP]
    put(logs, INVENTORY_GROUP, traffic_lines(confirmed=0, queued=0, rejected=0).lines)
    clock.now += 1
    exporter.poll_once()
    assert INVENTORY_GROUP not in exporter.follower.known  # discovery runs every 30 s
    clock.now += 30
    exporter.poll_once()
    assert INVENTORY_GROUP in exporter.follower.known
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 1
    assert counter(exporter, "valerix_gremlin_injections", mode="latency") == 4  # 2 per traffic_lines
    exporter.close()


def test_malformed_and_foreign_lines_are_counted_not_exported(aws, tmp_path):
    logs = aws.client("logs")
    good = traffic_lines(confirmed=1, queued=0, rejected=0).lines
    foreign = json.loads(good[-1])
    foreign["_aws"]["CloudWatchMetrics"][0]["Namespace"] = "SomeoneElse"
    put(logs, ORDER_GROUP, ["not json at all", "[ERROR] " + good[0], "{broken", json.dumps(foreign), *good])
    exporter = make(aws, tmp_path / "state")
    exporter.poll_once()
    assert counter(exporter, "valerix_exporter_parse_errors", reason="prefixed") == 1
    assert counter(exporter, "valerix_exporter_parse_errors", reason="invalid_json") == 1
    assert counter(exporter, "valerix_exporter_dropped_records", reason="namespace") == 1
    assert counter(exporter, "valerix_exporter_ignored_lines") == 1
    assert counter(exporter, "valerix_order_outcomes", status="CONFIRMED") == 1
    exporter.close()


def test_queue_depths_and_http_endpoints(aws, tmp_path):
    sqs = aws.client("sqs")
    dlq = sqs.create_queue(QueueName="valerix-inventory-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    main = sqs.create_queue(
        QueueName="valerix-inventory",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})},
    )["QueueUrl"]
    completion = sqs.create_queue(QueueName="valerix-completion")["QueueUrl"]
    for _ in range(3):
        sqs.send_message(QueueUrl=main, MessageBody="{}")
    sqs.send_message(QueueUrl=dlq, MessageBody="{}")
    logs = aws.client("logs")
    traffic = traffic_lines()
    put(logs, ORDER_GROUP, traffic.lines)

    exporter = make(
        aws, tmp_path / "state", queue_urls={"inventory": main, "completion": completion}, cors_origins=[DASHBOARD]
    )
    port = exporter.start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while exporter.polls < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = requests.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "Access-Control-Allow-Origin" not in metrics.headers  # a scraper sends no Origin
        assert 'valerix_queue_depth{kind="main",queue="inventory",queue_name="valerix-inventory"} 3.0' in metrics.text
        assert (
            'valerix_queue_depth{kind="dlq",queue="inventory",queue_name="valerix-inventory-dlq"} 1.0' in metrics.text
        )
        assert 'valerix_queue_depth{kind="main",queue="completion",queue_name="valerix-completion"} 0.0' in metrics.text

        r = requests.get(f"{base}/api/summary", headers={"Origin": DASHBOARD}, timeout=5)
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == DASHBOARD
        summary = r.json()
        assert summary["queues"]["inventory"]["depth"] == 3
        assert summary["queues"]["inventory"]["dlqDepth"] == 1
        assert summary["queues"]["completion"]["dlqDepth"] is None
        latency = summary["orderLatency"]
        expected = sum(traffic.order_durations_ms) / len(traffic.order_durations_ms)
        assert latency["windowSeconds"] == 30 and latency["samples"] == len(traffic.order_durations_ms)
        assert latency["averageMs"] == pytest.approx(expected, abs=0.1)
        assert len(latency["series"]) == 60
        assert latency["series"][-1]["averageMs"] == latency["averageMs"]
        assert latency["series"][0]["averageMs"] is None  # 5 min ago: no samples
        order = summary["functions"]["order"]
        assert order["invocations"] == len(traffic.order_durations_ms) + 1 + 1  # + cold-start request + failed record
        assert order["errors"] == 1  # the failed queue record
        assert order["coldStarts"] == 1
        assert order["p50Ms"] == pytest.approx(60.0) and order["p95Ms"] > 1500
        assert summary["functions"]["inventory"]["errors"] == 1  # one 5xx
        assert summary["fallbacks"] == traffic.fallbacks
        assert summary["gremlinInjections"] == traffic.gremlin
        assert summary["circuitState"] == "open"
        assert summary["orders"] == traffic.order_statuses

        pre = requests.options(
            f"{base}/api/summary", headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "GET"}, timeout=5
        )
        assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == DASHBOARD
        health = requests.get(f"{base}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
        assert json.loads((tmp_path / "state" / "endpoint.json").read_text())["port"] == port
    finally:
        exporter.close()


def test_state_dir_is_exclusive(aws, tmp_path):
    exporter = make(aws, tmp_path / "state")
    with pytest.raises(RuntimeError, match="another exporter"):
        make(aws, tmp_path / "state")
    exporter.close()
    make(aws, tmp_path / "state").close()


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",  # any other site
        "http://valerix-web-1a2b.s3-website.localhost:4567",  # the dashboard's host on another port
        "https://valerix-web-1a2b.s3-website.localhost:4566",  # another scheme
        "http://x.valerix-web-1a2b.s3-website.localhost:4566",  # a subdomain of it
        "null",  # sandboxed frames, file:// pages
    ],
)
def test_cors_refuses_every_origin_but_the_dashboards(aws, tmp_path, origin):
    exporter = make(
        aws, tmp_path / "state", cors_origins=[DASHBOARD, "*", "http://*.s3-website.localhost.localstack.cloud:4566"]
    )
    port = exporter.serve()
    try:
        base = f"http://127.0.0.1:{port}"
        summary = requests.get(f"{base}/api/summary", headers={"Origin": origin}, timeout=5)
        assert summary.status_code == 200
        assert "Access-Control-Allow-Origin" not in summary.headers
        assert summary.headers["Vary"] == "Origin"
        pre = requests.options(
            f"{base}/api/summary", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}, timeout=5
        )
        assert pre.status_code == 403 and "Access-Control-Allow-Origin" not in pre.headers
        assert origin in pre.json()["message"]
        # A pattern stands for exactly one DNS label of an origin, nothing more.
        bucket = "http://valerix-web.s3-website.localhost.localstack.cloud:4566"
        ok = requests.get(f"{base}/api/summary", headers={"Origin": bucket}, timeout=5)
        assert ok.headers["Access-Control-Allow-Origin"] == bucket
    finally:
        exporter.close()


def _bound_address(port: int) -> str:
    import psutil

    return next(
        c.laddr.ip
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    )


def test_exporter_listens_on_loopback_by_default(aws, tmp_path, monkeypatch, caplog):
    from valerix_exporter.__main__ import build_parser, config_from_args

    monkeypatch.delenv("VALERIX_EXPORTER_HOST", raising=False)
    config = config_from_args(build_parser().parse_args(["--port", "0", "--state-dir", str(tmp_path / "s")]))
    assert config.cors_origins == []
    exporter = Exporter(config, session=aws)
    port = exporter.serve()
    try:
        assert _bound_address(port) == "127.0.0.1"
        assert "listening on" not in caplog.text
    finally:
        exporter.close()


def test_exporter_on_every_interface_says_so(aws, tmp_path, caplog):
    exporter = Exporter(Config(state_dir=str(tmp_path / "s"), port=0, host="0.0.0.0"), session=aws)
    port = exporter.serve()
    try:
        assert _bound_address(port) == "0.0.0.0"
        assert "listening on 0.0.0.0: every machine that can reach this one can read these metrics" in caplog.text
    finally:
        exporter.close()
