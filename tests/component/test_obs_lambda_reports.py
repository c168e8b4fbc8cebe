"""Lambda's REPORT lines in the exporter (issue 18): per function, the peak of Max Memory Used
against its Memory Size, cold starts with their Init Duration, and p50/p95 of Duration — as
Prometheus metrics and in /api/summary's `lambdas`."""

from __future__ import annotations

import math
import time

import boto3
import pytest
import requests
from moto import mock_aws
from prometheus_client.parser import text_string_to_metric_families

from tests.component.test_obs_exporter_component import make, put
from valerix_exporter.emf import parse_message
from valerix_exporter.lambda_report import function_of, parse_report

# moto only: fake credentials, never a real AWS profile
pytestmark = pytest.mark.usefixtures("fake_aws_credentials")

ORDER_FN = "Valerix-order-api"
INVENTORY_FN = "Valerix-inventory-api"
MIB = 1024 * 1024


def executor_report(
    request_id: str, duration_ms: float, memory_mb: int, max_used_mb: int, init_ms: float | None = None
) -> str:
    """Exactly the line localcloud/valerix_localcloud/executor.py writes."""
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {max_used_mb} MB"
    )
    if init_ms is not None:
        line += f"\tInit Duration: {init_ms:.2f} ms"
    return line


def test_the_executors_report_line_is_read_field_by_field():
    cold = parse_report(executor_report("r-1", 12.345, 512, 143, init_ms=245.1))
    assert (cold.request_id, cold.duration_ms, cold.billed_duration_ms) == ("r-1", 12.35, 13)
    assert (cold.memory_size_mb, cold.max_memory_used_mb, cold.init_duration_ms) == (512, 143, 245.1)
    assert cold.cold_start
    warm = parse_report(executor_report("r-2", 3.0, 256, 90))
    assert warm.init_duration_ms is None and not warm.cold_start


def test_awss_own_report_line_with_extra_fields_is_read_too():
    line = (
        "REPORT RequestId: 8f5c2a8e-4b1a-4c1e-9d1b-0c3f6e1d2a7b\tDuration: 102.25 ms\t"
        "Billed Duration: 103 ms\tMemory Size: 1024 MB\tMax Memory Used: 78 MB\t"
        "Init Duration: 412.98 ms\t\nXRAY TraceId: 1-5e1b4151-5ac6c58f3b0e5f6c\tSampled: true\t"
    )
    report = parse_report(line.splitlines()[0])
    assert (report.duration_ms, report.memory_size_mb, report.max_memory_used_mb, report.init_duration_ms) == (
        102.25,
        1024,
        78,
        412.98,
    )


@pytest.mark.parametrize(
    "line",
    [
        "REPORT RequestId: x\tBilled Duration: 3 ms",  # no Duration: not a usable report
        "REPORT RequestId: x\tDuration: fast",  # not a number
        "REPORT RequestId:",  # nothing at all
        "START RequestId: x Version: $LATEST",  # another platform line
        "2025-01-01 x INFO REPORT RequestId: x\tDuration: 1 ms",  # not at the start of the line
        "REPORT RequestId: x\tDuration: 1e999 ms",  # no exponent forms: not a number
    ],
)
def test_lines_that_are_not_usable_report_lines_are_not_reports(line):
    assert parse_report(line) is None
    assert parse_message(line, 0).reports == []


def test_a_report_line_in_a_multi_line_event_is_found_and_not_counted_as_ignored():
    message = "\n".join(
        [
            "START RequestId: a Version: $LATEST",
            "hello from the handler",
            "END RequestId: a",
            executor_report("a", 5.0, 512, 100),
        ]
    )
    result = parse_message(message, 0)
    assert [r.request_id for r in result.reports] == ["a"]
    assert result.ignored_lines == 3


def test_function_names_come_from_the_log_group():
    assert function_of("/aws/lambda/Valerix-order-api") == "Valerix-order-api"
    assert function_of("custom-group") == "custom-group"


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def metric_samples(text: str, name: str) -> dict[tuple, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_report_lines_become_metrics_and_the_summary_grid(aws, tmp_path):
    logs = aws.client("logs")
    now = int(time.time() * 1000)
    order = [
        executor_report("o1", 300.0, 512, 120, init_ms=250.0),  # cold start
        executor_report("o2", 20.0, 512, 140),  # the peak
        executor_report("o3", 30.0, 512, 130),
        executor_report("o4", 40.0, 512, 135, init_ms=270.0),
    ]  # a second environment
    inventory = [executor_report("i1", 10.0, 256, 60)]
    put(logs, f"/aws/lambda/{ORDER_FN}", ["START RequestId: o1 Version: $LATEST", *order], ts=now)
    put(logs, f"/aws/lambda/{INVENTORY_FN}", inventory, ts=now)
    exporter = make(aws, tmp_path / "state", log_group_prefixes=["/aws/lambda/"])
    port = exporter.serve()
    try:
        exporter.poll_once()
        summary = requests.get(f"http://127.0.0.1:{port}/api/summary", timeout=5).json()
        grid = summary["lambdas"]
        assert set(grid) == {ORDER_FN, INVENTORY_FN}
        o = grid[ORDER_FN]
        assert (o["memorySizeMb"], o["maxMemoryUsedMb"], o["memoryUsedPercent"]) == (512, 140, 27.3)
        assert (o["invocations"], o["coldStarts"]) == (4, 2)
        assert (o["initLastMs"], o["initP50Ms"], o["initMaxMs"]) == (270.0, 260.0, 270.0)
        assert (o["p50Ms"], o["p95Ms"], o["samples"]) == (35.0, 261.0, 4)
        i = grid[INVENTORY_FN]
        assert (i["memorySizeMb"], i["maxMemoryUsedMb"], i["coldStarts"], i["initLastMs"]) == (256, 60, 0, None)

        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        fn = (("function", ORDER_FN),)
        assert metric_samples(text, "valerix_lambda_max_memory_used_bytes")[fn] == 140 * MIB
        assert metric_samples(text, "valerix_lambda_memory_size_bytes")[fn] == 512 * MIB
        assert metric_samples(text, "valerix_lambda_duration_seconds_count")[fn] == 4
        assert metric_samples(text, "valerix_lambda_duration_seconds_sum")[fn] == pytest.approx(0.39)
        assert metric_samples(text, "valerix_lambda_init_duration_seconds_count")[fn] == 2
        # REPORT lines are read, not "ignored"; the START line still is
        assert metric_samples(text, "valerix_exporter_ignored_lines_total")[()] == 1
    finally:
        exporter.close()

    # a restart resumes from the snapshot: nothing counted twice, the peak kept
    exporter = make(aws, tmp_path / "state", log_group_prefixes=["/aws/lambda/"])
    try:
        exporter.poll_once()
        again = exporter.summary()["lambdas"][ORDER_FN]
        assert (again["invocations"], again["coldStarts"], again["maxMemoryUsedMb"]) == (4, 2, 140)
        assert again["p95Ms"] == 261.0
    finally:
        exporter.close()


def test_the_peak_never_goes_down_and_memory_size_follows_the_newest_configuration(aws, tmp_path):
    logs = aws.client("logs")
    group = f"/aws/lambda/{ORDER_FN}"
    now = int(time.time() * 1000)
    put(logs, group, [executor_report("a", 5.0, 512, 300)], ts=now - 2000)
    put(logs, group, [executor_report("b", 5.0, 1024, 200)], stream="s2", ts=now)
    exporter = make(aws, tmp_path / "state", log_group_prefixes=["/aws/lambda/"])
    try:
        exporter.poll_once()
        grid = exporter.summary()["lambdas"][ORDER_FN]
        assert (grid["memorySizeMb"], grid["maxMemoryUsedMb"]) == (1024, 300)
    finally:
        exporter.close()


def test_durations_older_than_the_window_leave_p50_but_not_the_totals(aws, tmp_path):
    logs = aws.client("logs")
    old = int(time.time() * 1000) - 600_000  # 10 minutes ago, outside the 5-minute window
    put(logs, f"/aws/lambda/{ORDER_FN}", [executor_report("a", 50.0, 512, 100, init_ms=200.0)], ts=old)
    exporter = make(aws, tmp_path / "state", log_group_prefixes=["/aws/lambda/"])
    try:
        exporter.poll_once()
        grid = exporter.summary()["lambdas"][ORDER_FN]
        assert (grid["p50Ms"], grid["p95Ms"], grid["samples"]) == (None, None, 0)
        assert (grid["invocations"], grid["coldStarts"], grid["initLastMs"], grid["maxMemoryUsedMb"]) == (
            1,
            1,
            200.0,
            100,
        )
    finally:
        exporter.close()
