"""Gremlin document model and injector (moto: SSM + DynamoDB)."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from moto import mock_aws

from functions.common import settings
from functions.gremlin import document, injector
from functions.gremlin.document import (
    GremlinDocumentError,
    all_off,
    counter_id,
    parse_document,
    parse_document_json,
)
from functions.gremlin.injector import GremlinInjector, InjectedError

PARAM = "/valerix/test/gremlin"
TABLE = "valerix-test-gremlin-state"


# ---------------------------------------------------------------- document model


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"latency": {"delayMs": -5}}, "latency.delayMs", "greater than or equal to 0"),
        ({"latency": {"delayMs": 60001}}, "latency.delayMs", "less than or equal to 60000"),
        ({"latency": {"enabled": True}}, "latency.delayMs", "required"),
        ({"latency": {"delayMs": "5000"}}, "latency.delayMs", "valid integer"),
        ({"latency": {"delayMs": 10, "every": 0}}, "latency.every", "greater than or equal to 1"),
        ({"latency": {"delayMs": 10, "every": 2, "percentage": 5}}, "latency.every", "not both"),
        ({"error": {"percentage": 101}}, "error.percentage", "less than or equal to 100"),
        ({"error": {"percentage": -1}}, "error.percentage", "greater than or equal to 0"),
        ({"error": {"statusCode": 200}}, "error.statusCode", "greater than or equal to 400"),
        ({"error": {"statusCode": 600}}, "error.statusCode", "less than or equal to 599"),
        ({"error": {"enabled": "yes"}}, "error.enabled", "valid boolean"),
        ({"crash": {"when": "sometimes"}}, "crash.when", "before-commit"),
        ({"crash": {"when": "after-commit", "mode": "hard"}}, "crash.mode", "unknown field"),
        ({"meteor": {"enabled": True}}, "meteor", "unknown mode"),
        ({"latency": 5}, "latency", "must be an object"),
        ([1, 2], "body", "JSON object"),
    ],
)
def test_nonsense_is_rejected_naming_the_field(raw, field, words):
    with pytest.raises(GremlinDocumentError) as info:
        parse_document(raw)
    err = info.value
    assert err.status_code == 422
    assert field in err.message and words in err.message
    assert any(e["field"] == field for e in err.errors)


@pytest.mark.parametrize("text", [b"", b"   ", b"{not json", None])
def test_malformed_json_is_400(text):
    with pytest.raises(GremlinDocumentError) as info:
        parse_document_json(text)
    assert info.value.status_code == 400
    assert "body" in info.value.message


def test_defaults_and_all_off():
    assert all_off().to_json_dict() == {
        "latency": {"enabled": False, "delayMs": 0},
        "error": {"enabled": False, "statusCode": 500},
        "crash": {"enabled": False, "when": "before-commit"},
        "database": {"enabled": False, "fault": "unreachable"},
    }
    assert not all_off().any_enabled
    doc = parse_document({"error": {"percentage": 12.5}})
    assert doc.error.enabled and doc.error.status_code == 500 and doc.error.percentage == 12.5
    assert not doc.latency.enabled and not doc.crash.enabled


def test_design_example_round_trips():
    example = {
        "latency": {"enabled": True, "delayMs": 5000, "every": 1},
        "error": {"enabled": False, "statusCode": 500, "percentage": 10},
        "crash": {"enabled": False, "when": "after-commit", "every": 4},
        "database": {
            "enabled": True,
            "fault": "slow",
            "delayMs": 2500,
            "every": 2,
            "expiresAt": "2026-12-03T09:15:00Z",
        },
    }
    doc = parse_document(example)
    assert doc.to_json_dict() == example
    assert parse_document_json(doc.to_json()) == doc
    assert counter_id("latency", doc) == counter_id("latency", parse_document(example))
    assert counter_id("latency", doc) != counter_id("latency", all_off())


# ---------------------------------------------------------------- injector fixtures


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "inventory",
        "POWERTOOLS_METRICS_NAMESPACE": "Valerix",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ssm = boto3.client("ssm")
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield ssm, ddb
    injector.injector.cache_clear()


def put_doc(ssm, doc):
    ssm.put_parameter(Name=PARAM, Value=json.dumps(doc), Type="String", Overwrite=True)


def make_injector(ssm, ddb, **kwargs):
    kwargs.setdefault("cache_seconds", 0)
    return GremlinInjector(PARAM, TABLE, ssm_client=ssm, dynamodb_client=ddb, **kwargs)


class Exited(BaseException):
    """Stands in for the process exit (BaseException, like SystemExit: nothing catches it)."""


@pytest.fixture
def no_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr(injector.time, "sleep", slept.append)
    return slept


@pytest.fixture
def fake_exit(monkeypatch, capsys):
    """os._exit replaced: records the exit code and what had been written to stdout by then."""
    calls = []

    def _exit(code):
        calls.append({"code": code, "stdout_before_exit": capsys.readouterr().out})
        raise Exited(code)

    monkeypatch.setattr(injector.os, "_exit", _exit)
    return calls


def metric_lines(text):
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [m for m in lines if injector.METRIC_NAME in m]


def run_requests(inj, n):
    """Run n reservations through before_reservation; the 1-based numbers that got an error."""
    affected = []
    for i in range(1, n + 1):
        try:
            inj.before_reservation()
        except InjectedError:
            affected.append(i)
    return affected


# ---------------------------------------------------------------- injector behaviour


def test_every_3_is_counted_across_environments(aws):
    ssm, ddb = aws
    put_doc(ssm, {"error": {"statusCode": 503, "every": 3}})
    env_a, env_b = make_injector(ssm, ddb), make_injector(ssm, ddb)
    affected = []
    for i in range(1, 13):  # requests alternate between two execution environments
        try:
            (env_a if i % 2 else env_b).before_reservation()
        except InjectedError as exc:
            assert exc.status_code == 503
            affected.append(i)
    assert affected == [3, 6, 9, 12]


def test_error_raises_configured_code_and_counts_metric(aws, capsys, caplog):
    ssm, ddb = aws
    put_doc(ssm, {"error": {"statusCode": 418}})
    with pytest.raises(InjectedError) as info:
        make_injector(ssm, ddb).before_reservation()
    assert info.value.status_code == 418 and "418" in info.value.message
    out = capsys.readouterr().out
    [metric] = metric_lines(out)
    assert metric["mode"] == "error" and metric["service"] == "inventory" and metric[injector.METRIC_NAME] == [1.0]
    assert any(getattr(r, "mode", None) == "error" and r.levelname == "WARNING" for r in caplog.records)


def test_latency_sleeps_delay_and_is_counted(aws, no_sleep, capsys):
    ssm, ddb = aws
    put_doc(ssm, {"latency": {"delayMs": 1500, "every": 2}})
    inj = make_injector(ssm, ddb)
    for _ in range(4):
        inj.before_reservation()
    assert no_sleep == [1.5, 1.5]
    assert [m["mode"] for m in metric_lines(capsys.readouterr().out)] == ["latency", "latency"]


def test_percentage_0_and_100(aws, no_sleep):
    ssm, ddb = aws
    put_doc(ssm, {"error": {"percentage": 0}})
    assert run_requests(make_injector(ssm, ddb), 50) == []
    put_doc(ssm, {"error": {"percentage": 100}})
    assert run_requests(make_injector(ssm, ddb), 50) == list(range(1, 51))


def test_percentage_uses_random(aws):
    ssm, ddb = aws
    put_doc(ssm, {"error": {"percentage": 30}})
    values = iter([0.1, 0.5, 0.29, 0.3, 0.99])
    inj = make_injector(ssm, ddb, rng=lambda: next(values))
    assert run_requests(inj, 5) == [1, 3]


def test_no_selector_means_every_request(aws):
    ssm, ddb = aws
    put_doc(ssm, {"error": {}})
    assert run_requests(make_injector(ssm, ddb), 3) == [1, 2, 3]


def test_disabled_and_missing_document_inject_nothing(aws, no_sleep):
    ssm, ddb = aws
    assert run_requests(make_injector(ssm, ddb), 3) == []  # no parameter yet
    put_doc(ssm, {"error": {"enabled": False, "every": 1}, "latency": {"enabled": False, "delayMs": 10}})
    assert run_requests(make_injector(ssm, ddb), 3) == [] and no_sleep == []


def test_counts_only_while_enabled(aws):
    ssm, ddb = aws
    on = {"error": {"every": 3}}
    put_doc(ssm, on)
    inj = make_injector(ssm, ddb)
    assert run_requests(inj, 2) == []
    put_doc(ssm, {"error": {"enabled": False, "every": 3}})
    assert run_requests(inj, 5) == []
    put_doc(ssm, on)
    assert run_requests(inj, 3) == [1]  # the 3rd counted request overall under this document


def test_cache_picks_up_a_change_within_the_window(aws, monkeypatch):
    ssm, ddb = aws
    from aws_lambda_powertools.utilities.parameters import base

    now = [dt.datetime(2030, 1, 1, 12, 0, 0)]

    class FakeDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return now[0]

    monkeypatch.setattr(base, "datetime", FakeDatetime)
    put_doc(ssm, {"error": {"statusCode": 500}})
    inj = make_injector(ssm, ddb, cache_seconds=1)
    assert run_requests(inj, 1) == [1]
    put_doc(ssm, {"error": {"enabled": False}})  # switched off: cached for up to the window
    now[0] += dt.timedelta(milliseconds=500)
    assert run_requests(inj, 1) == [1]
    now[0] += dt.timedelta(milliseconds=1600)  # past the 1 s window (well within 2 s)
    assert run_requests(inj, 1) == []


def test_fail_open_when_table_missing(aws, caplog, capsys):
    ssm, ddb = aws
    ddb.delete_table(TableName=TABLE)
    put_doc(ssm, {"error": {"every": 2}})
    assert run_requests(make_injector(ssm, ddb), 4) == []
    assert metric_lines(capsys.readouterr().out) == []
    failures = [r for r in caplog.records if "counter unavailable" in r.getMessage()]
    assert len(failures) == 1  # later requests in the same window skip the dead table
    assert any("failing open" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_fail_open_when_ssm_unreachable(aws, caplog):
    _ssm, ddb = aws
    calls = []
    now = [100.0]

    class BrokenSSM:
        def get_parameter(self, **_kw):
            calls.append(now[0])
            raise ConnectionError("endpoint unreachable")

    inj = GremlinInjector(
        PARAM, TABLE, cache_seconds=1, ssm_client=BrokenSSM(), dynamodb_client=ddb, clock=lambda: now[0]
    )
    inj.before_reservation()
    inj.after_commit()
    assert not inj.document().any_enabled
    assert calls == [100.0]  # not retried within the window
    now[0] += 1.01
    inj.before_reservation()
    assert calls == [100.0, 101.01]
    assert any("failing open" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_fail_open_on_invalid_stored_document(aws):
    ssm, ddb = aws
    ssm.put_parameter(Name=PARAM, Value='{"error": {"statusCode": 9000}}', Type="String")
    assert run_requests(make_injector(ssm, ddb), 2) == []


def test_crash_before_commit_flushes_metric_then_exits(aws, fake_exit, caplog):
    ssm, ddb = aws
    put_doc(ssm, {"crash": {"when": "before-commit", "every": 2}, "error": {"statusCode": 500}})
    inj = make_injector(ssm, ddb)
    with pytest.raises(InjectedError):  # request 1: no crash, so the error applies
        inj.before_reservation()
    with pytest.raises(Exited):  # request 2: crash wins over error
        inj.before_reservation()
    [call] = fake_exit
    assert call["code"] == 1
    [metric] = metric_lines(call["stdout_before_exit"])[-1:]
    assert metric["mode"] == "crash_before_commit"
    assert any(
        r.getMessage() == "gremlin: crashing before commit" and getattr(r, "mode", None) == "crash_before_commit"
        for r in caplog.records
    )


def test_crash_after_commit_only_in_after_commit(aws, fake_exit):
    ssm, ddb = aws
    put_doc(ssm, {"crash": {"when": "after-commit", "every": 2}})
    inj = make_injector(ssm, ddb)
    for _ in range(4):
        inj.before_reservation()  # never crashes before the commit
    inj.after_commit()  # committed reservation 1
    with pytest.raises(Exited):
        inj.after_commit()  # committed reservation 2
    [call] = fake_exit
    [metric] = metric_lines(call["stdout_before_exit"])
    assert metric["mode"] == "crash_after_commit"


def test_latency_combines_with_error(aws, no_sleep):
    ssm, ddb = aws
    put_doc(ssm, {"latency": {"delayMs": 200}, "error": {"every": 2}})
    inj = make_injector(ssm, ddb)
    assert run_requests(inj, 4) == [2, 4]
    assert no_sleep == [0.2] * 4


def test_singleton_is_lazy_and_shared(aws, monkeypatch):
    monkeypatch.setenv("GREMLIN_PARAMETER_NAME", PARAM)
    monkeypatch.setenv("GREMLIN_STATE_TABLE", TABLE)
    monkeypatch.setenv("GREMLIN_CACHE_SECONDS", "3")
    settings.get_settings.cache_clear()  # a fresh environment: its settings are parsed once
    settings.runtime.cache_clear()
    injector.injector.cache_clear()
    first = injector.injector()
    assert first is injector.injector()
    assert (first.parameter_name, first.state_table, first.cache_seconds) == (PARAM, TABLE, 3)
    assert first.service == "inventory"
    assert first._provider is None and first._dynamodb_client is None  # nothing created yet
    first.before_reservation()  # no parameter: nothing happens


def test_unconfigured_injector_is_a_no_op(monkeypatch):
    monkeypatch.delenv("GREMLIN_PARAMETER_NAME", raising=False)
    inj = GremlinInjector()
    inj.before_reservation()
    inj.after_commit()


def test_real_process_exit_flushes_metric_and_log_first(tmp_path):
    """No monkeypatching: a child process really exits 1 and its stdout has the metric + log."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import json, boto3
from moto import mock_aws
with mock_aws():
    boto3.client("ssm").put_parameter(Name={PARAM!r}, Type="String",
        Value=json.dumps({{"crash": {{"when": "before-commit"}}}}))
    from functions.gremlin.injector import injector
    injector().before_reservation()
    print("SURVIVED")
"""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
        "GREMLIN_PARAMETER_NAME": PARAM,
        "POWERTOOLS_SERVICE_NAME": "inventory",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert "SURVIVED" not in proc.stdout
    [metric] = metric_lines(proc.stdout)
    assert metric["mode"] == "crash_before_commit"
    assert "gremlin: crashing before commit" in proc.stdout


def test_minimal_all_off_document_as_deployed_by_infra_is_valid():
    doc = parse_document({"latency": {"enabled": False}, "error": {"enabled": False}, "crash": {"enabled": False}})
    assert doc == all_off()


# ---------------------------------------------------------------- database faults + expiry (issue 17)

NOW = 1_800_000_000.0  # a fixed wall clock: 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"database": {"fault": "meltdown"}}, "database.fault", "'unreachable', 'slow', 'locked' or 'exhausted'"),
        ({"database": {"fault": "locked"}}, "database.delayMs", "required when the database fault is 'locked'"),
        ({"database": {"fault": "locked", "delayMs": -3}}, "database.delayMs", "greater than or equal to 0"),
        ({"database": {"fault": "slow", "delayMs": -1}}, "database.delayMs", "greater than or equal to 0"),
        ({"database": {"fault": "slow", "delayMs": 60001}}, "database.delayMs", "less than or equal to 60000"),
        ({"database": {"fault": "slow"}}, "database.delayMs", "required"),
        (
            {"database": {"fault": "exhausted", "delayMs": 10}},
            "database.delayMs",
            "only applies to the 'slow' and 'locked'",
        ),
        ({"database": {"every": 0}}, "database.every", "greater than or equal to 1"),
        ({"database": {"lockTable": "products"}}, "database.lockTable", "unknown field"),
        ({"error": {"expiresAt": "tomorrow"}}, "error.expiresAt", "datetime"),
        ({"error": {"expiresAt": "2030-01-01T00:00:00"}}, "error.expiresAt", "timezone"),
        ({"error": {"expiresInSeconds": 0}}, "error.expiresInSeconds", "greater than or equal to 1"),
        ({"error": {"expiresInSeconds": 86401}}, "error.expiresInSeconds", "less than or equal to 86400"),
        ({"error": {"expiresInSeconds": 60, "expiresAt": "2030-01-01T00:00:00Z"}}, "error.expiresAt", "not both"),
    ],
)
def test_database_and_expiry_nonsense_is_rejected_naming_the_field(raw, field, words):
    with pytest.raises(GremlinDocumentError) as info:
        parse_document(raw)
    assert info.value.status_code == 422
    assert field in info.value.message and words in info.value.message, info.value.message
    assert any(e["field"] == field for e in info.value.errors)


def test_database_mode_defaults_to_unreachable_and_round_trips():
    doc = parse_document({"database": {"every": 3}})
    assert doc.database.enabled and doc.database.fault == "unreachable" and doc.database.delay_ms is None
    assert doc.to_json_dict()["database"] == {"enabled": True, "fault": "unreachable", "every": 3}
    assert parse_document_json(doc.to_json()) == doc


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_stamp_expiry_gives_enabled_modes_an_absolute_expiry():
    doc = document.stamp_expiry(
        parse_document(
            {
                "latency": {"delayMs": 10},  # no expiry given: the default 15 min
                "error": {"expiresInSeconds": 90},
                "crash": {"enabled": False, "expiresInSeconds": 90},  # off: nothing to switch off
                "database": {"fault": "exhausted", "expiresAt": iso(NOW + 3600)},
            }
        ),
        NOW,
    )
    stored = doc.to_json_dict()
    assert stored["latency"]["expiresAt"] == iso(NOW + 15 * 60)
    assert stored["error"]["expiresAt"] == iso(NOW + 90)
    assert "expiresAt" not in stored["crash"]
    assert stored["database"]["expiresAt"] == iso(NOW + 3600)
    assert "expiresInSeconds" not in json.dumps(stored)  # only the absolute time is stored
    assert parse_document_json(doc.to_json()) == doc


@pytest.mark.parametrize(
    ("expires", "words"),
    [(NOW - 1, "must be in the future"), (NOW, "must be in the future"), (NOW + 86400 + 1, "at most 24 h ahead")],
)
def test_stamp_expiry_refuses_an_expiry_in_the_past_or_too_far(expires, words):
    with pytest.raises(GremlinDocumentError) as info:
        document.stamp_expiry(parse_document({"database": {"expiresAt": iso(expires)}}), NOW)
    assert info.value.status_code == 422
    assert "database.expiresAt" in info.value.message and words in info.value.message
    assert info.value.errors[0]["field"] == "database.expiresAt"


def test_an_expired_mode_is_off_and_shown_as_expired():
    doc = parse_document({"error": {"expiresAt": iso(NOW + 60)}, "database": {"expiresAt": iso(NOW + 600)}})
    assert doc.effective(NOW + 59).error.enabled
    later = doc.effective(NOW + 60)
    assert not later.error.enabled and later.database.enabled
    assert not doc.effective(NOW + 600).any_enabled
    view = doc.to_view(NOW + 120)
    assert view["error"] == {
        "enabled": False,
        "statusCode": 500,
        "expiresAt": iso(NOW + 60),
        "expired": True,
        "remainingSeconds": 0,
    }
    assert view["database"]["enabled"] is True and view["database"]["expired"] is False
    assert view["database"]["remainingSeconds"] == 480
    assert "expired" not in view["latency"]  # no expiry, nothing to show


def test_the_injector_obeys_nothing_after_the_expiry(aws, no_sleep, fake_exit):
    ssm, ddb = aws
    put_doc(
        ssm,
        {
            "latency": {"delayMs": 100, "expiresAt": iso(NOW + 60)},
            "error": {"statusCode": 503, "expiresAt": iso(NOW + 60)},
            "crash": {"when": "after-commit", "expiresAt": iso(NOW + 60)},
            "database": {"expiresAt": iso(NOW + 60)},
        },
    )
    clock = {"now": NOW + 59}
    inj = make_injector(ssm, ddb, wall_clock=lambda: clock["now"])
    with pytest.raises(InjectedError):
        inj.before_reservation()
    assert no_sleep == [0.1]
    assert inj.database_fault() is not None
    clock["now"] = NOW + 60  # expired: off by itself, nobody called DELETE
    inj.before_reservation()
    inj.after_commit()
    assert inj.database_fault() is None
    assert no_sleep == [0.1] and fake_exit == []


def test_database_fault_every_n_counts_transactions_and_is_recorded(aws, capsys):
    ssm, ddb = aws
    put_doc(ssm, {"database": {"fault": "slow", "delayMs": 250, "every": 2}})
    inj = make_injector(ssm, ddb)
    faults = [inj.database_fault() for _ in range(6)]
    assert [i for i, f in enumerate(faults, 1) if f is not None] == [2, 4, 6]
    assert {(f.fault, f.delay_ms) for f in faults if f is not None} == {("slow", 250)}
    modes = [m["mode"] for m in metric_lines(capsys.readouterr().out)]
    assert modes == ["database_slow"] * 3
    doc = parse_document(json.loads(ssm.get_parameter(Name=PARAM)["Parameter"]["Value"]))
    item = ddb.get_item(TableName=TABLE, Key={"id": {"S": counter_id("database", doc)}})["Item"]
    assert item["count"]["N"] == "6"


def test_database_mode_is_independent_of_the_reservation_modes(aws, no_sleep):
    ssm, ddb = aws
    put_doc(ssm, {"database": {"fault": "unreachable"}})
    inj = make_injector(ssm, ddb)
    inj.before_reservation()  # the database mode alone injects nothing on the reservation hooks
    inj.after_commit()
    assert no_sleep == []
    assert inj.database_fault().fault == "unreachable"


class _NoSsm:
    def get_parameter(self, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("a service that does not obey must not read the gremlin")


@pytest.mark.parametrize("service", ["order", "gremlin", "reconcile"])
def test_other_services_do_not_obey_database_faults_nor_read_ssm(monkeypatch, service):
    inj = GremlinInjector(PARAM, TABLE, cache_seconds=0, service=service, ssm_client=_NoSsm(), dynamodb_client=object())
    assert inj.database_fault() is None


def test_an_unwired_inventory_function_does_not_obey(monkeypatch):
    inj = GremlinInjector(
        "", TABLE, cache_seconds=0, service="inventory", ssm_client=_NoSsm(), dynamodb_client=object()
    )
    assert inj.database_fault() is None  # e.g. the products API: no GREMLIN_PARAMETER_NAME


# ---------------------------------------------------------------- stop conditions (CloudWatch alarms, moto)


def make_alarm(cw, name):
    cw.put_metric_alarm(
        AlarmName=name,
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )


def test_a_stop_condition_switches_everything_off_for_good(aws, no_sleep, capsys):
    ssm, ddb = aws
    cw = boto3.client("cloudwatch")
    make_alarm(cw, "Valerix-inventory-dlq-not-empty")
    put_doc(
        ssm,
        {
            "error": {"statusCode": 503},
            "database": {"fault": "exhausted"},
            "stopConditions": ["Valerix-inventory-dlq-not-empty"],
        },
    )
    inj = make_injector(ssm, ddb, cloudwatch_client=cw)
    with pytest.raises(InjectedError):
        inj.before_reservation()
    assert inj.database_fault() is not None

    cw.set_alarm_state(AlarmName="Valerix-inventory-dlq-not-empty", StateValue="ALARM", StateReason="test")
    fresh = make_injector(ssm, ddb, cloudwatch_client=cw)  # a new environment: no cached state
    fresh.before_reservation()  # no error any more
    assert fresh.database_fault() is None
    assert "stopped" in [m["mode"] for m in metric_lines(capsys.readouterr().out)]

    cw.set_alarm_state(AlarmName="Valerix-inventory-dlq-not-empty", StateValue="OK", StateReason="test")
    another = make_injector(ssm, ddb, cloudwatch_client=cw)
    another.before_reservation()  # stays off although the alarm cleared: the marker says so
    assert another.database_fault() is None
    doc = parse_document(json.loads(ssm.get_parameter(Name=PARAM)["Parameter"]["Value"]))
    marker = ddb.get_item(TableName=TABLE, Key={"id": {"S": document.stop_id(doc)}})["Item"]
    assert marker["alarm"]["S"] == "Valerix-inventory-dlq-not-empty"


class _BrokenCloudWatch:
    def describe_alarms(self, **kwargs):
        raise RuntimeError("CloudWatch is away")


def test_unreadable_stop_conditions_hold_the_gremlin_off(aws):
    ssm, ddb = aws
    put_doc(ssm, {"error": {"statusCode": 503}, "stopConditions": ["Valerix-api-5xx"]})
    inj = make_injector(ssm, ddb, cloudwatch_client=_BrokenCloudWatch())
    inj.before_reservation()  # a safety switch that cannot be read counts as tripped


def test_stop_conditions_are_validated_by_shape():
    with pytest.raises(GremlinDocumentError) as info:
        parse_document({"stopConditions": ["a", "b", "c", "d", "e", "f"]})
    assert "stopConditions" in info.value.message
    with pytest.raises(GremlinDocumentError) as info:
        parse_document({"stopConditions": [""]})
    assert "stopConditions.0" in info.value.message
    with pytest.raises(GremlinDocumentError) as info:
        parse_document({"stopConditions": "Valerix-api-5xx"})
    assert "stopConditions" in info.value.message
