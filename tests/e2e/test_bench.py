"""`make bench` writes every key the issue asks for (a short run: the numbers are not judged
here, only that each phase really measured something)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from infra.outputs import (
    FUNCTION_NAME_SUFFIX,
    GREMLIN_FUNCTION_NAME,
    INVENTORY_API_FUNCTION_NAME,
    INVENTORY_QUEUE_FUNCTION_NAME,
    ORDER_API_FUNCTION_NAME,
    ORDER_COMPLETION_FUNCTION_NAME,
)
from tests.unit.test_report_charts import group, points

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MEASURED = [
    "happy_p50_ms",
    "happy_p99_ms",
    "happy_rps",
    "baseline_p50_ms",
    "baseline_rps",
    "fallback_p99_ms",
    "circuit_open_p99_ms",
]


def test_a_short_bench_run_writes_every_key(localcloud, tmp_path):
    out = tmp_path / "bench.json"
    # up_warm re-runs `make up`; the lifecycle test covers that path.
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench.py"),
            "--seconds",
            "3",
            "--clients",
            "2",
            "--skip",
            "up_warm",
            "--init-repeats",  # one fresh interpreter per function: the keys are judged, not the medians
            "1",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bench = json.loads(out.read_text())
    for key in MEASURED:
        value = bench.get(key)
        assert isinstance(value, (int, float)) and not math.isnan(value) and value > 0, (key, value)
    assert bench["happy_confirmed_share"] == 1.0
    # the floor reserved through its own invoke emulator (not LocalStack), and both ratios are
    # this run's own numbers
    assert bench["baseline_confirmed_share"] == 1.0
    assert bench["happy_rps_ratio"] == pytest.approx(bench["happy_rps"] / bench["baseline_rps"], abs=0.01)
    assert bench["happy_p50_ratio"] == pytest.approx(bench["happy_p50_ms"] / bench["baseline_p50_ms"], abs=0.01)
    assert bench["circuit_open_share"] > 0.9  # the circuit-open phase measured open-circuit answers
    # 0 is a real result: orders the consumers finished while the gremlin was still on count
    # from the switch-off
    assert isinstance(bench["completion_p95_ms"], (int, float)) and bench["completion_p95_ms"] >= 0
    assert bench["completion_orders"] > 0
    assert set(bench["cold_start_ms"]) == {
        localcloud.stack[name]
        for name in (
            ORDER_API_FUNCTION_NAME,
            INVENTORY_API_FUNCTION_NAME,
            GREMLIN_FUNCTION_NAME,
            ORDER_COMPLETION_FUNCTION_NAME,
            INVENTORY_QUEUE_FUNCTION_NAME,
        )
    }
    assert all(ms > 0 for ms in bench["cold_start_ms"].values())
    # AWS-realistic INIT and bundle size for every deployed function (issue 15)
    deployed = {name for key, name in localcloud.stack.items() if key.endswith(FUNCTION_NAME_SUFFIX)}
    assert set(bench["aws_init_ms"]) == set(bench["bundle_mb"]) == deployed
    assert all(ms > 0 for ms in bench["aws_init_ms"].values())
    assert all(mb > 1 for mb in bench["bundle_mb"].values())  # the wheels are in it, not only functions/
    assert "Python" in bench["aws_init_bundle"]
    assert bench["machine"]["cpus"] >= 1
    # the report next to the JSON, with charts drawn from this run's requests
    report = (tmp_path / "bench-report.md").read_text()
    assert "](bench-charts/latency-cdf.svg)" in report and "happy_p50_ms" in report
    timeline = tmp_path / "bench-charts" / "latency-over-time.svg"
    assert points(timeline, "points-happy-201") == bench["happy_requests"]
    cdf = tmp_path / "bench-charts" / "latency-cdf.svg"
    for phase in ("happy", "baseline", "circuit_open", "fallback"):
        assert group(cdf, f"cdf-{phase}") is not None, phase
    assert (tmp_path / "bench-report.html").exists()
    assert "[happy] done:" in result.stdout
