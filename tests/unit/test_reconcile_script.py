"""scripts/reconcile.py without a cloud: exit codes, what it prints, the private report files."""

from __future__ import annotations

import datetime as dt
import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from infra.outputs import RECONCILE_FUNCTION_NAME
from scripts import reconcile as script

REPO = Path(__file__).resolve().parents[2]

CLEAN = {
    "status": "clean",
    "checkedAt": "2026-01-01T00:00:00+00:00",
    "staleMinutes": 5,
    "since": None,
    "counts": {"orders": 2, "reservations": 2},
    "dlqDepths": {"inventory": 0, "completion": 0},
    "problemCounts": {"missing_reservation": 0, "dlq_not_empty": 0},
    "problems": [],
}
PROBLEMS = {
    **CLEAN,
    "status": "problems",
    "problemCounts": {"missing_reservation": 1, "dlq_not_empty": 1},
    "problems": [
        {"kind": "missing_reservation", "orderId": "o-1", "message": "order o-1 is CONFIRMED ..."},
        {"kind": "dlq_not_empty", "queue": "completion", "message": "dead-letter queue ..."},
    ],
}


class FakeLambda:
    def __init__(self, answer, function_error: bool = False) -> None:
        self.answer, self.function_error = answer, function_error
        self.payloads: list[Any] = []

    def invoke(self, FunctionName, InvocationType, Payload):
        self.payloads.append(json.loads(Payload))
        out: dict[str, Any] = {"Payload": io.BytesIO(json.dumps(self.answer).encode())}
        if self.function_error:
            out["FunctionError"] = "Unhandled"
        return out


@pytest.fixture
def run(monkeypatch, tmp_path, capsys):
    def go(answer, *args, function_error=False):
        fake = FakeLambda(answer, function_error)
        monkeypatch.setattr(
            script, "lambda_client_and_outputs", lambda _args: (fake, {RECONCILE_FUNCTION_NAME: "Valerix-reconcile"})
        )
        code = script.main(["--report-dir", str(tmp_path), *args])
        out = capsys.readouterr()
        return code, out.out, out.err, fake

    return go


def test_clean_exits_0_and_writes_private_reports(run, tmp_path):
    code, out, _, _ = run(CLEAN)
    assert code == 0 and "clean: no problems" in out
    for name in ("reconcile-report.json", "reconcile-report.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert json.loads((tmp_path / "reconcile-report.json").read_text()) == CLEAN


def test_problems_exit_1_naming_each(run, tmp_path):
    code, out, _, _ = run(PROBLEMS)
    assert code == 1
    assert "missing_reservation: order o-1 is CONFIRMED ..." in out
    assert "dlq_not_empty: dead-letter queue ..." in out
    assert "2 problem(s); nothing was repaired" in out
    assert "| missing_reservation | o-1 |" in (tmp_path / "reconcile-report.md").read_text()


def test_a_failed_run_is_exit_2_not_a_clean_answer(run, tmp_path):
    code, _, err, _ = run({"errorType": "DatabaseUnavailable", "errorMessage": "cannot connect"}, function_error=True)
    assert code == 2 and "DatabaseUnavailable" in err and "cannot connect" in err
    assert not (tmp_path / "reconcile-report.json").exists()
    code, _, err, _ = run({"something": "else"})
    assert code == 2 and "not a reconciliation report" in err


def test_options_reach_the_function(run):
    *_, fake = run(CLEAN, "--stale-minutes", "10", "--since", "2026-01-31T12:00:00Z")
    assert fake.payloads == [{"staleMinutes": 10, "since": "2026-01-31T12:00:00+00:00"}]


def test_relative_since_is_measured_back_from_now():
    value = dt.datetime.fromisoformat(script.since_argument("2h"))
    assert abs((dt.datetime.now(dt.UTC) - value) - dt.timedelta(hours=2)) < dt.timedelta(minutes=1)


@pytest.mark.parametrize("value", ["2x", "yesterday", "2026-01-31T12:00:00"])
def test_bad_since_is_refused(value):
    with pytest.raises(Exception, match="UTC offset"):
        script.since_argument(value)
