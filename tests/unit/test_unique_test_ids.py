"""Every collected test has an id of its own: pytest-xdist schedules by id, so tests sharing one
run once between them (schemathesis' per-operation fuzz cases did, under TEST_WORKERS=2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FUZZ_FILES = ["tests/e2e/test_fuzz.py", "tests/e2e/test_fuzz_anonymous.py"]


def _collected(*paths: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_each_fuzzed_operation_is_a_test_with_its_own_id():
    ids = _collected(*FUZZ_FILES)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert "tests/e2e/test_fuzz.py::test_order_api_conforms[POST /orders]" in ids
    assert "tests/e2e/test_fuzz_anonymous.py::test_gremlin_api_refuses_anonymous_writes[PUT /gremlin]" in ids
    # one case per operation of each API, not one per test function
    assert len([i for i in ids if "::test_order_api_conforms[" in i]) >= 4
