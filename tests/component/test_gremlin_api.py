"""Gremlin control API through the Lambda handler (API Gateway REST proxy events, moto)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from functions.gremlin import injector as gremlin_injector
from functions.gremlin.document import counter_id, parse_document
from functions.gremlin.injector import GremlinInjector, InjectedError

PARAM = "/valerix/test/gremlin"
TABLE = "valerix-test-gremlin-state"
ADMIN_KEY = "gremlin-test-admin-key-0123456789"
ADMIN = {"x-api-key": ADMIN_KEY}
CONTEXT = SimpleNamespace(
    function_name="valerix-gremlin",
    memory_limit_in_mb=256,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:valerix-gremlin",
    aws_request_id="req-1",
    get_remaining_time_in_millis=lambda: 30_000,
)


def rest_event(method: str, path: str = "/gremlin", body: str | None = None, headers: dict | None = None) -> dict:
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})}
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "accountId": "123456789012",
            "apiId": "abc123",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
        },
        "body": body,
        "isBase64Encoded": False,
    }


@pytest.fixture
def gremlin(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "gremlin",
        "POWERTOOLS_METRICS_NAMESPACE": "Valerix",
        "GREMLIN_PARAMETER_NAME": PARAM,
        "GREMLIN_STATE_TABLE": TABLE,
        "GREMLIN_CACHE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        secret_arn = boto3.client("secretsmanager").create_secret(
            Name="valerix-test/admin-api-key", SecretString=ADMIN_KEY
        )["ARN"]
        monkeypatch.setenv("ADMIN_KEY_SECRET_ARN", secret_arn)
        from functions.gremlin import app as gremlin_app
        from functions.gremlin.handler import api_handler

        fresh_environment(gremlin_app)

        def call(method: str, body=None, raw: str | None = None, path: str = "/gremlin", headers=None):
            text = raw if raw is not None else (json.dumps(body) if body is not None else None)
            if headers is None:
                headers = ADMIN if method in ("PUT", "DELETE") else {}
            response = api_handler(rest_event(method, path, text, headers=headers), CONTEXT)
            return response["statusCode"], json.loads(response["body"]) if response["body"] else None

        yield SimpleNamespace(
            call=call, ssm=boto3.client("ssm"), ddb=ddb, secrets=boto3.client("secretsmanager"), secret_arn=secret_arn
        )
        fresh_environment(gremlin_app)


def fresh_environment(gremlin_app) -> None:
    """What a new execution environment starts with: settings, clients, store and injector all
    built again on first use (functools.cache factories)."""
    from functions.common import aws, settings

    for factory in (
        settings.get_settings,
        settings.runtime,
        aws.client,
        aws.secrets_provider,
        gremlin_app.get_store,
        gremlin_injector.injector,
    ):
        factory.cache_clear()


ALL_OFF = {
    "latency": {"enabled": False, "delayMs": 0},
    "error": {"enabled": False, "statusCode": 500},
    "crash": {"enabled": False, "when": "before-commit"},
    "database": {"enabled": False, "fault": "unreachable"},
}
EXAMPLE = {
    "latency": {"enabled": True, "delayMs": 5000, "every": 1},
    "error": {"enabled": False, "statusCode": 500, "percentage": 10},
    "crash": {"enabled": False, "when": "after-commit", "every": 4},
    "database": {"enabled": True, "fault": "slow", "delayMs": 300, "every": 5},
}


EXPIRY_KEYS = ("expiresAt", "remainingSeconds", "expired")


def settings(doc: dict) -> dict:
    """A document without its expiry (checked on its own below): the settings it switches."""
    return {name: {k: v for k, v in mode.items() if k not in EXPIRY_KEYS} for name, mode in doc.items()}


def raw_stored(ssm) -> dict:
    return json.loads(ssm.get_parameter(Name=PARAM)["Parameter"]["Value"])


def stored(ssm):
    return settings(raw_stored(ssm))


def test_get_without_document_is_all_off(gremlin):
    assert gremlin.call("GET") == (200, ALL_OFF)


def test_put_get_delete_round_trip(gremlin):
    status, body = gremlin.call("PUT", EXAMPLE)
    assert (status, settings(body)) == (200, EXAMPLE)
    assert stored(gremlin.ssm) == EXAMPLE
    status, got = gremlin.call("GET")
    assert (status, settings(got)) == (200, EXAMPLE)

    status, body = gremlin.call("PUT", {"error": {"statusCode": 503, "every": 3}})  # overwrite
    assert status == 200
    assert settings(body) == {**ALL_OFF, "error": {"enabled": True, "statusCode": 503, "every": 3}}
    status, got = gremlin.call("GET")
    assert (status, settings(got)) == (200, settings(body))

    assert gremlin.call("DELETE") == (200, ALL_OFF)
    assert stored(gremlin.ssm) == ALL_OFF
    assert gremlin.call("GET") == (200, ALL_OFF)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"latency": {"enabled": True, "delayMs": -1}}, "latency.delayMs"),
        ({"error": {"enabled": True, "percentage": 150}}, "error.percentage"),
        ({"error": {"enabled": True, "percentage": -3}}, "error.percentage"),
        ({"error": {"statusCode": 302}}, "error.statusCode"),
        ({"crash": {"enabled": True, "when": "during-lunch"}}, "crash.when"),
        ({"flood": {"enabled": True}}, "flood"),
        ({"latency": {"delayMs": 10, "jitter": 5}}, "latency.jitter"),
        ({"latency": {"delayMs": 10, "every": 3, "percentage": 50}}, "latency.every"),
        ({"crash": {"every": 0}}, "crash.every"),
        ({"latency": {"enabled": True}}, "latency.delayMs"),
        ("latency", "body"),
    ],
)
def test_nonsense_is_4xx_naming_the_field_and_nothing_stored(gremlin, doc, field):
    gremlin.call("PUT", EXAMPLE)
    status, body = gremlin.call("PUT", doc)
    assert status == 422
    assert field in body["message"], body
    assert any(err["field"] == field for err in body["errors"])
    assert stored(gremlin.ssm) == EXAMPLE  # nothing stored


@pytest.mark.parametrize("raw", ["{nope", "", "[1,"])
def test_malformed_json_is_400(gremlin, raw):
    status, body = gremlin.call("PUT", raw=raw)
    assert status == 400 and "body" in body["message"]


def test_unknown_route_and_method_are_json_errors(gremlin):
    status, body = gremlin.call("POST", {"a": 1})
    assert status == 405 and body["message"]
    status, body = gremlin.call("GET", path="/gremlins")
    assert status == 404 and body["message"]


def test_put_and_delete_reset_counters_and_the_injector_follows(gremlin):
    ssm, ddb = gremlin.ssm, gremlin.ddb
    gremlin.call("PUT", {"error": {"statusCode": 500, "every": 3}})
    gremlin_injector.injector.cache_clear()
    env_a = gremlin_injector.injector()  # the process-wide one, configured from the environment
    env_b = GremlinInjector(PARAM, TABLE, cache_seconds=0, ssm_client=ssm, dynamodb_client=ddb)

    def affected(n):
        hits = []
        for i in range(1, n + 1):
            try:
                (env_a if i % 2 else env_b).before_reservation()
            except InjectedError as exc:
                assert exc.status_code == 500
                hits.append(i)
        return hits

    assert affected(10) == [3, 6, 9]
    doc = parse_document(raw_stored(ssm))
    item = ddb.get_item(TableName=TABLE, Key={"id": {"S": counter_id("error", doc)}})["Item"]
    assert item["count"]["N"] == "10"

    gremlin.call("PUT", {"error": {"statusCode": 500, "every": 3}})  # same document again
    assert ddb.scan(TableName=TABLE)["Count"] == 0  # counters reset
    assert affected(4) == [3]

    gremlin.call("DELETE")
    assert ddb.scan(TableName=TABLE)["Count"] == 0
    assert affected(6) == []


INTERNALS = (
    TABLE,
    PARAM,
    "arn:",
    "123456789012",
    "botocore",
    "ResourceNotFound",
    "Traceback",
    "GREMLIN_",
    "Exception",
    "Error",
)


def assert_no_internals(body):
    text = json.dumps(body)
    for word in INTERNALS:
        assert word not in text, (word, body)


@pytest.fixture
def gremlin_log():
    """The gremlin logger's JSON lines (Powertools formatter, correlation id included)."""
    import io
    import logging

    from functions.common.observability import get_logger

    logger = get_logger("gremlin")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    logger.removeHandler(handler)


def test_store_faults_are_503_with_a_short_reason_and_a_request_id(gremlin, gremlin_log):
    gremlin.ddb.delete_table(TableName=TABLE)
    status, body = gremlin.call("PUT", EXAMPLE)
    assert status == 503
    assert body["message"] == "gremlin settings unavailable, try again later"
    assert body["requestId"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"  # API Gateway's request id
    assert_no_internals(body)
    # the detail is in the log, under the same correlation id
    logged = gremlin_log()
    failure = [r for r in logged if r.get("message") == "request failed"]
    assert failure and failure[0]["correlation_id"] == body["requestId"]
    assert TABLE in failure[0]["cause"]


def test_ssm_faults_on_get_are_503_without_internals(gremlin, monkeypatch):
    from functions.gremlin import app as gremlin_app

    class BrokenSsm:
        def get_parameter(self, **_):
            raise ConnectionError(
                f"Could not connect to the endpoint URL: https://ssm.us-east-1.amazonaws.com/ {PARAM}"
            )

    monkeypatch.setattr(gremlin_app.get_store(), "_ssm", BrokenSsm())
    status, body = gremlin.call("GET")
    assert status == 503 and body["message"] == "gremlin settings unavailable, try again later"
    assert_no_internals(body)
    assert "amazonaws" not in json.dumps(body)


def test_unconfigured_function_is_503_without_naming_variables(gremlin, monkeypatch):
    from functions.gremlin import app as gremlin_app

    monkeypatch.delenv("GREMLIN_PARAMETER_NAME")
    fresh_environment(gremlin_app)
    status, body = gremlin.call("GET")
    assert status == 503 and body["message"] == "gremlin settings unavailable, try again later"
    assert_no_internals(body)


# --------------------------------------------------------------------------- admin key (checked by the app)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "missing x-api-key header"),
        ({"x-api-key": ""}, 401, "missing x-api-key header"),
        ({"x-api-key": "wrong-key-0123456789012345"}, 403, "invalid API key"),
        ({"x-api-key": ADMIN_KEY[:-1]}, 403, "invalid API key"),  # a prefix is not the key
        ({"x-api-key": ADMIN_KEY + "x"}, 403, "invalid API key"),
        ({"x-api-key": ADMIN_KEY.upper()}, 403, "invalid API key"),
    ],
    ids=["absent", "empty", "wrong", "prefix", "longer", "case"],
)
def test_writes_without_the_admin_key_are_refused_and_change_nothing(gremlin, method, headers, status, message):
    assert gremlin.call("PUT", EXAMPLE)[0] == 200
    gremlin.ddb.put_item(TableName=TABLE, Item={"id": {"S": "some-counter"}, "count": {"N": "2"}})
    reply_status, body = gremlin.call(method, {"crash": {"enabled": True, "every": 1}}, headers=headers)
    assert (reply_status, body["message"]) == (status, message)
    assert body["requestId"]
    assert stored(gremlin.ssm) == EXAMPLE  # nothing stored
    assert gremlin.ddb.scan(TableName=TABLE)["Count"] == 1  # counters not reset


def test_a_refused_write_is_refused_before_its_body_is_read(gremlin):
    status, _body = gremlin.call("PUT", raw="{not json", headers={})
    assert status == 401  # not 400: an anonymous caller learns nothing about the body


def test_reading_needs_no_key(gremlin):
    assert gremlin.call("GET", headers={})[0] == 200


def test_the_key_is_read_from_secrets_manager_and_cached(gremlin, monkeypatch):
    from functions.common import aws

    calls = []
    real = gremlin.secrets.get_secret_value

    original_provider = aws.secrets_provider()
    client = original_provider.client
    monkeypatch.setattr(client, "get_secret_value", lambda **kw: calls.append(kw) or real(**kw))
    for _ in range(3):
        assert gremlin.call("DELETE")[0] == 200
    assert gremlin.call("DELETE", headers={"x-api-key": "wrong-key-0123456789012345"})[0] == 403
    assert len(calls) == 1  # one fetch per ADMIN_KEY_CACHE_SECONDS, not one per request

    # a rotated key is honoured once the cache is refreshed, and the old one refused
    gremlin.secrets.put_secret_value(SecretId=gremlin.secret_arn, SecretString="rotated-admin-key-0123456789abcdef")
    original_provider.clear_cache()
    assert gremlin.call("DELETE")[0] == 403
    assert gremlin.call("DELETE", headers={"x-api-key": "rotated-admin-key-0123456789abcdef"})[0] == 200


def test_an_unreadable_secret_keeps_the_route_closed(gremlin, monkeypatch):
    from functions.common import aws

    gremlin.call("PUT", EXAMPLE)
    gremlin.secrets.delete_secret(SecretId=gremlin.secret_arn, ForceDeleteWithoutRecovery=True)
    aws.secrets_provider().clear_cache()
    status, body = gremlin.call("DELETE")
    assert status == 503 and body["message"] == "admin key cannot be checked right now, try again later"
    assert_no_internals(body)
    assert stored(gremlin.ssm) == EXAMPLE


@pytest.mark.parametrize("value", ["", b"", None])
def test_an_empty_secret_refuses_everything(gremlin, monkeypatch, value):
    from functions.common import aws

    assert gremlin.call("PUT", EXAMPLE)[0] == 200
    monkeypatch.setattr(aws.secrets_provider(), "get", lambda *a, **kw: value)
    assert gremlin.call("DELETE", headers={"x-api-key": ADMIN_KEY})[0] == 503
    assert gremlin.call("DELETE", headers={"x-api-key": "anything-at-all-0123456789"})[0] == 503
    assert stored(gremlin.ssm) == EXAMPLE


# --------------------------------------------------------------------------- database faults + expiry (issue 17)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"database": {"fault": "meltdown"}}, "database.fault"),  # an unknown fault mode
        ({"database": {"fault": "slow", "delayMs": -250}}, "database.delayMs"),  # a negative delay
        ({"database": {"fault": "slow"}}, "database.delayMs"),
        ({"database": {"fault": "unreachable", "delayMs": 100}}, "database.delayMs"),
        ({"database": {"expiresAt": "2020-01-01T00:00:00Z"}}, "database.expiresAt"),  # in the past
        ({"latency": {"delayMs": 5, "expiresAt": "2020-01-01T00:00:00+02:00"}}, "latency.expiresAt"),
        ({"error": {"expiresAt": "2999-01-01T00:00:00Z"}}, "error.expiresAt"),  # beyond 24 h
        ({"error": {"expiresAt": "soon"}}, "error.expiresAt"),
        ({"error": {"expiresInSeconds": -5}}, "error.expiresInSeconds"),
        ({"stopWhen": {"alarm": "dlq"}}, "stopWhen"),  # stop conditions are not offered (yet)
    ],
)
def test_bad_database_or_expiry_settings_are_422_naming_the_field_and_nothing_changes(gremlin, doc, field):
    assert gremlin.call("PUT", EXAMPLE)[0] == 200
    before = raw_stored(gremlin.ssm)
    gremlin.ddb.put_item(TableName=TABLE, Item={"id": {"S": "some-counter"}, "count": {"N": "2"}})
    status, body = gremlin.call("PUT", doc)
    assert status == 422, body
    assert field in body["message"], body
    assert any(err["field"] == field for err in body["errors"]), body
    assert raw_stored(gremlin.ssm) == before  # the stored gremlin (expiry included) is unchanged
    assert gremlin.ddb.scan(TableName=TABLE)["Count"] == 1  # counters not reset


def test_every_enabled_mode_is_stored_with_an_absolute_expiry(gremlin):
    import time

    before = time.time()
    status, body = gremlin.call(
        "PUT",
        {
            "database": {"fault": "exhausted", "every": 2},
            "error": {"expiresInSeconds": 120},
            "crash": {"enabled": False},
        },
    )
    after = time.time()
    assert status == 200
    raw = raw_stored(gremlin.ssm)
    expires = parse_document(raw)
    assert before + 900 <= expires.database.expires_at.timestamp() <= after + 901  # default 15 min
    assert before + 120 <= expires.error.expires_at.timestamp() <= after + 121
    assert "expiresAt" not in raw["crash"] and "expiresInSeconds" not in json.dumps(raw)
    assert body["database"]["expiresAt"] == raw["database"]["expiresAt"]
    assert body["database"]["expired"] is False and 0 < body["database"]["remainingSeconds"] <= 900
    assert gremlin.call("DELETE")[1]["database"] == {"enabled": False, "fault": "unreachable"}


def test_get_shows_an_expired_setting_as_expired_and_off(gremlin, monkeypatch):
    gremlin.ssm.put_parameter(
        Name=PARAM,
        Type="String",
        Overwrite=True,
        Value=json.dumps(
            {
                "database": {"enabled": True, "fault": "slow", "delayMs": 2000, "expiresAt": "2026-01-01T00:00:00Z"},
                "error": {"enabled": True, "statusCode": 503, "expiresAt": "2999-01-01T00:00:00Z"},
            }
        ),
    )  # stored earlier; its expiry has passed since
    status, body = gremlin.call("GET")
    assert status == 200
    assert body["database"] == {
        "enabled": False,
        "fault": "slow",
        "delayMs": 2000,
        "expiresAt": "2026-01-01T00:00:00Z",
        "expired": True,
        "remainingSeconds": 0,
    }
    assert body["error"]["enabled"] is True and body["error"]["expired"] is False
    injector = GremlinInjector(
        PARAM,
        TABLE,
        cache_seconds=0,
        service="inventory",  # obeys database faults
        ssm_client=gremlin.ssm,
        dynamodb_client=gremlin.ddb,
    )
    assert injector.database_fault() is None  # and the injector agrees: off by itself
    with pytest.raises(InjectedError):
        injector.before_reservation()  # the unexpired error mode is still obeyed
    gremlin.ssm.put_parameter(
        Name=PARAM,
        Type="String",
        Overwrite=True,
        Value=json.dumps(
            {"database": {"enabled": True, "fault": "slow", "delayMs": 2000, "expiresAt": "2999-01-01T00:00:00Z"}}
        ),
    )
    assert injector.database_fault().fault == "slow"  # the same setting, not expired, is obeyed


# --------------------------------------------------------------------------- stop conditions (CloudWatch alarms)

DLQ_ALARM = "Valerix-inventory-dlq-not-empty"


@pytest.fixture
def alarms(gremlin, monkeypatch):
    from functions.gremlin import app as gremlin_app

    monkeypatch.setenv("GREMLIN_STOP_ALARMS", f"{DLQ_ALARM},Valerix-api-5xx,Valerix-not-created")
    fresh_environment(gremlin_app)
    cw = boto3.client("cloudwatch")
    for name in (DLQ_ALARM, "Other-stack-api-5xx"):
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
    yield cw
    fresh_environment(gremlin_app)


@pytest.mark.parametrize(
    ("names", "field"),
    [
        (["Valerix-no-such-alarm"], "stopConditions.0"),  # not a known name
        (["Valerix-not-created"], "stopConditions.0"),  # a known name, but no such alarm in CloudWatch
        ([DLQ_ALARM, "Other-stack-api-5xx"], "stopConditions.1"),  # exists, but not in the known list
        ([DLQ_ALARM, ""], "stopConditions.1"),
    ],
)
def test_an_unknown_alarm_name_is_422_naming_it_and_nothing_changes(gremlin, alarms, names, field):
    assert gremlin.call("PUT", EXAMPLE)[0] == 200
    before = raw_stored(gremlin.ssm)
    status, body = gremlin.call("PUT", {"error": {"every": 2}, "stopConditions": names})
    assert status == 422, body
    assert field in body["message"] and any(e["field"] == field for e in body["errors"]), body
    assert raw_stored(gremlin.ssm) == before


def test_stop_conditions_without_known_alarms_are_refused(gremlin, monkeypatch):
    status, body = gremlin.call("PUT", {"error": {"every": 2}, "stopConditions": [DLQ_ALARM]})
    assert status == 422 and "stopConditions" in body["message"], body


def test_a_firing_alarm_stops_the_gremlin_and_it_stays_stopped(gremlin, alarms):
    status, body = gremlin.call("PUT", {"error": {"statusCode": 503}, "stopConditions": [DLQ_ALARM]})
    assert status == 200 and "stopped" not in body and body["stopConditions"] == [DLQ_ALARM]
    assert body["error"]["enabled"] is True

    alarms.set_alarm_state(AlarmName=DLQ_ALARM, StateValue="ALARM", StateReason="messages in the DLQ")
    status, body = gremlin.call("GET")
    assert status == 200 and body["stopped"]["alarm"] == DLQ_ALARM and body["error"]["enabled"] is False

    alarms.set_alarm_state(AlarmName=DLQ_ALARM, StateValue="OK", StateReason="drained")
    assert gremlin.call("GET")[1]["stopped"]["alarm"] == DLQ_ALARM  # off for good, not flapping

    status, body = gremlin.call("PUT", {"error": {"statusCode": 503}, "stopConditions": [DLQ_ALARM]})
    assert status == 200 and "stopped" not in body and body["error"]["enabled"] is True  # a new PUT re-arms
