"""A running exporter following moto's CloudWatch Logs, checked by ``promtool check metrics``
and scraped by a real Prometheus server; plus the CLI (``python -m valerix_exporter``) as a
real process.

The exporter runs in this process (moto's server mode needs flask, which is not installed), so
moto's in-process mock serves it; Prometheus is a real separate process scraping it over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from tests.obs_emf_samples import capture, request, traffic_lines
from tests.obs_prometheus import free_port
from valerix_exporter.app import Config, Exporter

# moto only: fake credentials, never a real AWS profile
pytestmark = pytest.mark.usefixtures("fake_aws_credentials")

REPO = Path(__file__).resolve().parents[2]
GROUP = "/aws/lambda/valerix-order-api"


def start_exporter(session, state: Path, port: int, queue_urls: dict) -> Exporter:
    exporter = Exporter(
        Config(state_dir=str(state), host="127.0.0.1", port=port, poll_interval=0.5, queue_urls=queue_urls),
        session=session,
    )
    exporter.start()
    deadline = time.monotonic() + 10
    while exporter.polls < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    return exporter


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Logs with known traffic in moto + a running exporter."""
    with mock_aws():
        session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        logs, sqs = session.client("logs"), session.client("sqs")
        logs.create_log_group(logGroupName=GROUP)
        logs.create_log_stream(logGroupName=GROUP, logStreamName="s1")
        traffic = traffic_lines()
        now = int(time.time() * 1000)
        logs.put_log_events(
            logGroupName=GROUP,
            logStreamName="s1",
            logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(traffic.lines)],
        )
        dlq = sqs.create_queue(QueueName="valerix-inventory-dlq")["QueueUrl"]
        main = sqs.create_queue(QueueName="valerix-inventory")["QueueUrl"]
        sqs.send_message(QueueUrl=dlq, MessageBody="{}")
        state = tmp_path_factory.mktemp("exporter") / "state"
        queues = {"inventory": main, "inventory-dlq": dlq}
        port = free_port()
        world = {
            "session": session,
            "logs": logs,
            "traffic": traffic,
            "state": state,
            "port": port,
            "queues": queues,
            "url": f"http://127.0.0.1:{port}",
        }
        world["exporter"] = start_exporter(session, state, port, queues)
        yield world
        world["exporter"].close()


def test_promtool_check_metrics_accepts_the_exporter_output(world):
    text = requests.get(f"{world['url']}/metrics", timeout=5).text
    assert "valerix_order_outcomes_total" in text and "valerix_http_request_duration_seconds_bucket" in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool prints lint findings even with exit code 0; there must be none
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_openmetrics_negotiation(world):
    r = requests.get(
        f"{world['url']}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=5
    )
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_real_prometheus_scrapes_counts_histogram_and_alerts(world, prometheus_factory):
    traffic, logs = world["traffic"], world["logs"]
    prom = prometheus_factory([f"127.0.0.1:{world['port']}"])
    prom.wait_for_target_up()

    confirmed = traffic.order_statuses["CONFIRMED"]
    assert prom.wait_for_value('sum(valerix_order_outcomes_total{status="CONFIRMED"})') == confirmed
    by_status = {
        r["metric"]["status"]: float(r["value"][1])
        for r in prom.query("sum by (status) (valerix_order_outcomes_total)")
    }
    assert by_status == {k: float(v) for k, v in traffic.order_statuses.items()}
    # latency histogram of the order API
    durations = traffic.order_durations_ms
    assert prom.value('sum(valerix_http_request_duration_seconds_count{service="order"})') == len(durations)
    assert prom.value('sum(valerix_http_request_duration_seconds_bucket{service="order",le="0.1"})') == sum(
        1 for d in durations if d <= 100
    )
    assert prom.value('sum(valerix_http_request_duration_seconds_sum{service="order"})') == pytest.approx(
        sum(durations) / 1000
    )
    assert prom.value('sum(valerix_queue_depth{kind="dlq",queue="inventory"})') == 1

    # slow order API for a few seconds -> rolling 30 s average above 1 s -> OrderApiLatencyHigh;
    # the DLQ message -> DlqNotEmpty; CircuitState 2 -> CircuitOpen
    for _i in range(6):
        lines = capture(lambda: request("order", "/orders", "POST", "2xx", 3000.0))
        logs.put_log_events(
            logGroupName=GROUP,
            logStreamName="s1",
            logEvents=[{"timestamp": int(time.time() * 1000), "message": m} for m in lines],
        )
        time.sleep(1)
    avg = prom.wait_for_value("valerix:order_api_latency_seconds:avg30s", lambda v: v > 1, timeout=20)
    assert avg == pytest.approx(3.0, rel=0.01)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        firing = {a["labels"]["alertname"] for a in prom.alerts() if a["state"] == "firing"}
        if {"OrderApiLatencyHigh", "DlqNotEmpty", "CircuitOpen"} <= firing:
            break
        time.sleep(0.5)
    assert {"OrderApiLatencyHigh", "DlqNotEmpty", "CircuitOpen"} <= firing

    # a restart of the exporter: Prometheus sees no reset, no double count
    order_count = 'sum(valerix_http_request_duration_seconds_count{service="order"})'
    total = prom.wait_for_value(order_count, lambda v: v == len(durations) + 6)
    started = prom.value("valerix_exporter_start_time_seconds")
    world["exporter"].close()
    world["exporter"] = start_exporter(world["session"], world["state"], world["port"], world["queues"])
    # wait until Prometheus has scraped the new exporter (a couple of times)
    prom.wait_for_value("valerix_exporter_start_time_seconds", lambda v: v > started, timeout=15)
    time.sleep(2)
    assert prom.value(order_count) == total
    assert prom.value('sum(valerix_order_outcomes_total{status="CONFIRMED"})') == confirmed
    assert prom.value("sum(resets(valerix_order_outcomes_total[5m]))") == 0


def test_cli_runs_as_a_process(tmp_path):
    """``python -m valerix_exporter --once`` in a real interpreter (moto started inside it)."""
    lines = traffic_lines().lines
    script = textwrap.dedent(f"""
        import sys, time, boto3
        from moto import mock_aws
        mock = mock_aws(); mock.start()
        logs = boto3.client("logs", region_name="us-east-1")
        logs.create_log_group(logGroupName="/custom/order")
        logs.create_log_stream(logGroupName="/custom/order", logStreamName="s")
        lines = {json.dumps(lines)}
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName="/custom/order", logStreamName="s",
            logEvents=[{{"timestamp": now + i, "message": m}} for i, m in enumerate(lines)])
        from valerix_exporter.__main__ import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "--region",
            "us-east-1",
            "--log-groups",
            "/custom/order",
            "--state-dir",
            str(tmp_path / "st"),
            "--once",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        'valerix_order_outcomes_total{namespace="Valerix",path="sync",service="order",status="CONFIRMED"} 3.0'
        in result.stdout
    )
    assert (tmp_path / "st" / "state.json").exists()
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=result.stdout, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr
