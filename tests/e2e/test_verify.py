"""The short version of `make verify`: load under all three faults, then the invariants."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.unit.test_report_charts import points

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_short_verify_run_holds_every_invariant(localcloud):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "verify.py"), "--orders", "36", "--clients", "4"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((REPO / ".valerix" / "verify-report.json").read_text())
    assert len(report["orders"]) == 36
    assert report["violations"] == []
    assert {o["phase"] for o in report["orders"]} == {"latency", "crash", "error"}
    assert all(o["final_status"] in ("CONFIRMED", "REJECTED") for o in report["orders"])
    markdown = (REPO / ".valerix" / "verify-report.md").read_text()
    assert "All invariants hold" in markdown
    # the charts are this run's: one point per order, per phase and first answer
    timeline = REPO / ".valerix" / "verify-charts" / "latency-over-time.svg"
    assert "](verify-charts/latency-over-time.svg)" in markdown
    drawn = Counter()
    for phase in ("latency", "crash", "error"):
        for answer in ("201", "202", "409", "other"):
            drawn[phase] += points(timeline, f"points-{phase}-{answer}")
    assert drawn == Counter(o["phase"] for o in report["orders"])
    assert len(report["gremlin_marks"]) == 6  # on and off, per phase
    assert (REPO / ".valerix" / "verify-report.html").exists()
    # progress while it ran: plain lines (not a terminal here) with n/N and the ETA
    assert "[latency] done: 12/12 orders" in result.stdout
