"""The short version of `make verify`: load under all three faults, then the invariants."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_short_verify_run_holds_every_invariant(localcloud):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "verify.py"), "--orders", "36", "--clients", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((REPO / ".valerix" / "verify-report.json").read_text())
    assert len(report["orders"]) == 36
    assert report["violations"] == []
    assert {o["phase"] for o in report["orders"]} == {"latency", "crash", "error"}
    assert all(o["final_status"] in ("CONFIRMED", "REJECTED") for o in report["orders"])
    assert "All invariants hold" in (REPO / ".valerix" / "verify-report.md").read_text()
