"""`make logs`: which functions, how a line reads, and every event shown exactly once."""

from __future__ import annotations

import io
import json
import time

import boto3
import pytest
from moto import mock_aws

from infra.outputs import API_URL, INVENTORY_API_FUNCTION_NAME, ORDER_API_FUNCTION_NAME
from valerix_localcloud import logs

STACK = {
    ORDER_API_FUNCTION_NAME: "Valerix-order-api",
    INVENTORY_API_FUNCTION_NAME: "Valerix-inventory-api",
    API_URL: "http://127.0.0.1:4566/_aws/execute-api/x/prod",
}


def test_functions_are_named_without_the_stack_prefix():
    assert logs.function_names(STACK, "Valerix") == {
        "inventory-api": "Valerix-inventory-api",
        "order-api": "Valerix-order-api",
    }


@pytest.mark.parametrize(
    "wanted, expected",
    [
        (None, {"inventory-api", "order-api"}),
        ("order-api", {"order-api"}),
        ("Valerix-order-api", {"order-api"}),
        ("order-api, inventory-api", {"order-api", "inventory-api"}),
    ],
)
def test_select_by_short_or_full_name(wanted, expected):
    assert set(logs.select(logs.function_names(STACK, "Valerix"), wanted)) == expected


def test_an_unknown_function_is_refused_with_the_choices():
    with pytest.raises(
        logs.LogsError, match=r"no function 'order' in the stack; choose from: inventory-api, order-api"
    ):
        logs.select(logs.function_names(STACK, "Valerix"), "order")


@pytest.mark.parametrize("value, seconds_ago", [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5m", 90)])
def test_since_durations(value, seconds_ago):
    assert logs.parse_since(value, now=1_000_000.0) == (1_000_000 - seconds_ago) * 1000


@pytest.mark.parametrize("value", ["yesterday", "10 minutes", "-5m", ""])
def test_since_refuses_what_it_cannot_read(value):
    with pytest.raises(logs.LogsError, match="expected a duration"):
        logs.parse_since(value)


def powertools(message: str, **extra) -> str:
    return json.dumps(
        {
            "level": "INFO",
            "location": "app:1",
            "message": message,
            "timestamp": "t",
            "service": "order",
            "cold_start": False,
            "function_request_id": "r",
            **extra,
        }
    )


def parsed(function: str, event: dict, show_emf: bool = False) -> logs.Line:
    line = logs.parse_event(function, event, show_emf)
    assert line is not None, event
    return line


def test_a_powertools_line_shows_level_message_context_and_correlation_id():
    line = parsed(
        "order-api",
        {
            "timestamp": 5,
            "message": powertools("request failed", correlation_id="corr-1", status=503, error="database unavailable"),
        },
    )
    assert (line.function, line.correlation_id, line.level) == ("order-api", "corr-1", "INFO")
    assert line.text == "request failed status=503 error=database unavailable"


def test_lines_without_a_correlation_id_show_a_dash():
    assert parsed("f", {"timestamp": 1, "message": powertools("hello")}).correlation_id == "-"
    raw = parsed("f", {"timestamp": 1, "message": "START RequestId: abc Version: $LATEST\n"})
    assert (raw.correlation_id, raw.level, raw.text) == ("-", "", "START RequestId: abc Version: $LATEST")
    assert parsed("f", {"timestamp": 1, "message": "[1, 2]"}).text == "[1, 2]"


def test_emf_lines_are_hidden_unless_asked_and_blank_lines_always():
    emf = json.dumps({"_aws": {"Timestamp": 1, "CloudWatchMetrics": []}, "orders": 1})
    assert logs.parse_event("f", {"timestamp": 1, "message": emf}) is None
    assert parsed("f", {"timestamp": 1, "message": emf}, show_emf=True).level == "EMF"
    assert logs.parse_event("f", {"timestamp": 1, "message": " \n"}) is None


def test_each_function_has_its_own_colour_and_a_padded_prefix():
    fmt = logs.Formatter(["order-api", "gremlin"], colour=True)
    first = fmt(logs.Line(0, "order-api", "c1", "INFO", "a"))
    second = fmt(logs.Line(0, "gremlin", "-", "", "b"))
    assert "\x1b[" in first and fmt.colours["order-api"] != fmt.colours["gremlin"]
    assert f"\x1b[{fmt.colours['gremlin']}mgremlin  \x1b[0m | - | b" in second
    plain = logs.Formatter(["order-api", "gremlin"], colour=False)(logs.Line(0, "gremlin", "c9", "WARNING", "x\ny"))
    assert "\x1b" not in plain
    head, tail = plain.split("\n")
    assert head.endswith("gremlin   | c9 | WARNING x")
    assert tail.strip() == "y" and len(tail) - len(tail.lstrip()) == len(head.split(" | ")[0]) + 3


@pytest.fixture
def cloudwatch(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("logs", region_name="us-east-1")
        for group in ("/aws/lambda/Valerix-order-api", "/aws/lambda/Valerix-inventory-api"):
            client.create_log_group(logGroupName=group)
            client.create_log_stream(logGroupName=group, logStreamName="s")
        yield client


def put(client, function: str, *messages: str, at: int | None = None) -> None:
    at = at or int(time.time() * 1000)
    client.put_log_events(
        logGroupName=f"/aws/lambda/{function}",
        logStreamName="s",
        logEvents=[{"timestamp": at + i, "message": m} for i, m in enumerate(messages)],
    )


def test_following_shows_every_event_once_in_time_order_and_only_the_chosen_functions(cloudwatch):
    now = int(time.time() * 1000)
    put(cloudwatch, "Valerix-order-api", "old", at=now - 3_600_000)  # before --since
    put(cloudwatch, "Valerix-order-api", powertools("first", correlation_id="c-1"), at=now - 2000)
    put(cloudwatch, "Valerix-inventory-api", "between", at=now - 1000)
    tail = logs.LogTail(cloudwatch, logs.function_names(STACK, "Valerix"), now - 60_000)
    assert [(line.function, line.text) for line in tail.poll()] == [
        ("order-api", "first"),
        ("inventory-api", "between"),
    ]
    assert tail.poll() == []  # the overlap re-read drops what was shown
    put(cloudwatch, "Valerix-order-api", "later")
    assert [line.text for line in tail.poll()] == ["later"]

    only_order = logs.LogTail(cloudwatch, logs.select(logs.function_names(STACK, "Valerix"), "order-api"), now - 60_000)
    assert [line.function for line in only_order.poll()] == ["order-api", "order-api"]


def test_a_function_that_never_ran_has_no_log_group_and_is_no_error(cloudwatch):
    functions = {"gremlin": "Valerix-gremlin", "order-api": "Valerix-order-api"}
    put(cloudwatch, "Valerix-order-api", "hi")
    assert [line.text for line in logs.LogTail(cloudwatch, functions, 0).poll()] == ["hi"]


def test_no_follow_prints_and_returns(cloudwatch):
    put(cloudwatch, "Valerix-order-api", powertools("placed", correlation_id="c-7"))
    out = io.StringIO()
    slept: list[float] = []
    assert (
        logs.run(
            cloudwatch, {"order-api": "Valerix-order-api"}, 0, follow=False, out=out, colour=False, sleep=slept.append
        )
        == 0
    )
    assert slept == [] and "order-api | c-7 | INFO    placed" in out.getvalue()


def test_follow_stops_quietly_on_ctrl_c(cloudwatch):
    put(cloudwatch, "Valerix-order-api", "one")
    out = io.StringIO()

    def interrupt(_seconds):
        raise KeyboardInterrupt

    assert (
        logs.run(cloudwatch, {"order-api": "Valerix-order-api"}, 0, follow=True, out=out, colour=False, sleep=interrupt)
        == 0
    )
    assert out.getvalue().rstrip().endswith("order-api | - | one")


def test_an_event_holding_several_emf_documents_is_hidden_too():
    from valerix_localcloud.logs import parse_event

    emf = json.dumps({"_aws": {"Timestamp": 1, "CloudWatchMetrics": []}, "service": "order", "Count": 1})
    for message in (emf + "\n" + emf, emf + emf, emf + "\n" + emf + "\n"):
        assert parse_event("order-api", {"timestamp": 1, "message": message}) is None
        assert parse_event("order-api", {"timestamp": 1, "message": message}, show_emf=True) is not None
    mixed = emf + "\nnot json"
    assert parse_event("order-api", {"timestamp": 1, "message": mixed}) is not None
