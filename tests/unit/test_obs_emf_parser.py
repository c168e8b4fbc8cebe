"""The EMF parser and metric store fed with real Powertools output (captured stdout)."""

from __future__ import annotations

import json
import time

import pytest
from aws_lambda_powertools import Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider import cold_start
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.obs_emf_samples import FakeContext
from valerix_exporter.collector import make_registry
from valerix_exporter.emf import parse_message, snake_case
from valerix_exporter.store import MetricStore, build_summary, prometheus_name

TS = int(time.time() * 1000) - 60_000  # Powertools warns about timestamps older than 14 days


def lines_of(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def exposition(store: MetricStore) -> dict[str, float]:
    import threading

    text = generate_latest(make_registry(store, threading.RLock())).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
            samples[key] = s.value
    return samples


def feed(store: MetricStore, lines: list[str]):
    errors = []
    for line in lines:
        result = parse_message(line, TS)
        errors += result.errors
        for record in result.records:
            store.ingest(record)
    return errors


def test_multiple_metrics_and_list_values_in_one_line(capsys):
    metrics = Metrics(namespace="Valerix", service="order")
    metrics.add_dimension("route", "/orders")
    metrics.add_dimension("method", "POST")
    metrics.add_metric(name="HttpRequestDuration", unit=MetricUnit.Milliseconds, value=20)
    metrics.add_metric(name="HttpRequestDuration", unit=MetricUnit.Milliseconds, value=1500)
    metrics.add_metric(name="HttpRequestDuration", unit=MetricUnit.Milliseconds, value=2100)
    metrics.add_metric(name="HttpRequests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="HttpRequests", unit=MetricUnit.Count, value=2)
    metrics.flush_metrics()
    lines = lines_of(capsys)
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["HttpRequestDuration"] == [20.0, 1500.0, 2100.0]  # really a list value

    result = parse_message(lines[0], TS)
    assert not result.errors and result.emf_documents == 1
    by_name = {r.name: r for r in result.records}
    assert by_name["HttpRequestDuration"].values == (20.0, 1500.0, 2100.0)
    assert by_name["HttpRequestDuration"].unit == "Milliseconds"
    assert by_name["HttpRequests"].values == (1.0, 2.0)
    assert by_name["HttpRequests"].label_dict == {"method": "POST", "route": "/orders", "service": "order"}
    assert by_name["HttpRequests"].timestamp_ms == doc["_aws"]["Timestamp"]

    store = MetricStore()
    feed(store, lines)
    out = exposition(store)
    lbl = "method=POST,namespace=Valerix,route=/orders,service=order"
    assert out[f"valerix_http_requests_total{{{lbl}}}"] == 3.0
    assert out[f"valerix_http_request_duration_seconds_count{{{lbl}}}"] == 3
    assert out[f"valerix_http_request_duration_seconds_sum{{{lbl}}}"] == pytest.approx(3.62)
    assert out[f"valerix_http_request_duration_seconds_bucket{{le=0.025,{lbl}}}"] == 1
    assert out[f"valerix_http_request_duration_seconds_bucket{{le=1.5,{lbl}}}"] == 2  # 1.5 s is <= 1.5
    assert out[f"valerix_http_request_duration_seconds_bucket{{le=2.0,{lbl}}}"] == 2
    assert out[f"valerix_http_request_duration_seconds_bucket{{le=2.5,{lbl}}}"] == 3
    assert out[f"valerix_http_request_duration_seconds_bucket{{le=+Inf,{lbl}}}"] == 3


def test_several_dimension_sets_become_one_label_set(capsys):
    metrics = Metrics(namespace="Valerix", service="inventory")
    metrics.add_dimension("mode", "latency")
    metrics.add_dimensions(environment="local", region="us-east-1")
    metrics.add_metric(name="GremlinInjections", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
    lines = lines_of(capsys)
    dims = json.loads(lines[0])["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert len(dims) == 2  # really several dimension sets

    store = MetricStore()
    assert feed(store, lines) == []
    out = exposition(store)
    # counted once, with the union of the dimensions as labels (not once per dimension set)
    assert out == {
        **{k: v for k, v in out.items() if k.startswith("valerix_exporter")},
        "valerix_gremlin_injections_total{environment=local,mode=latency,namespace=Valerix,"
        "region=us-east-1,service=inventory}": 1.0,
    }


def test_single_metric_and_gauge_last_value_by_timestamp(capsys):
    with single_metric(name="Fallbacks", unit=MetricUnit.Count, value=1, namespace="Valerix") as m:
        m.add_dimension("service", "order")
        m.add_dimension("reason", "timeout")
    newer = Metrics(namespace="Valerix", service="order")
    newer.set_timestamp(TS + 2000)
    newer.add_metric(name="CircuitState", unit=MetricUnit.NoUnit, value=2)
    newer.flush_metrics()
    older = Metrics(namespace="Valerix", service="order")
    older.set_timestamp(TS + 1000)
    older.add_metric(name="CircuitState", unit=MetricUnit.NoUnit, value=0)
    older.flush_metrics()
    lines = lines_of(capsys)
    assert len(lines) == 3
    store = MetricStore()
    assert feed(store, lines) == []
    out = exposition(store)
    assert out["valerix_fallbacks_total{namespace=Valerix,reason=timeout,service=order}"] == 1.0
    # the later EMF timestamp wins even though it was read first
    assert out["valerix_circuit_state{namespace=Valerix,service=order}"] == 2.0
    assert build_summary(store)["circuitState"] == "open"


def test_cold_start_metric(capsys):
    cold_start.reset_cold_start_flag()
    metrics = Metrics(namespace="Valerix", service="order")

    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event, context):
        metrics.add_metric(name="OrderOutcomes", unit=MetricUnit.Count, value=1)

    handler({}, FakeContext("valerix-order-api"))
    handler({}, FakeContext("valerix-order-api"))
    lines = lines_of(capsys)
    store = MetricStore()
    assert feed(store, lines) == []
    out = exposition(store)
    assert out["valerix_cold_start_total{function_name=valerix-order-api,namespace=Valerix,service=order}"] == 1.0
    assert out["valerix_order_outcomes_total{namespace=Valerix,service=order}"] == 2.0
    assert build_summary(store)["functions"]["order"]["coldStarts"] == 1


def test_malformed_lines_are_skipped_and_counted(capsys):
    metrics = Metrics(namespace="Valerix", service="order")
    metrics.add_metric(name="OrderOutcomes", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
    good = lines_of(capsys)[0]
    doc = json.loads(good)
    missing_value = json.loads(good)
    del missing_value["OrderOutcomes"]
    bad_aws = {**doc, "_aws": {"CloudWatchMetrics": "nope"}}
    message = "\n".join(
        [
            "START RequestId: 1f0c Version: $LATEST",  # ignored, not an error
            '{"level":"INFO","message":"order created"}',  # structured log: ignored
            "2025-11-21T10:00:00Z 1f0c INFO " + good,  # prefixed EMF -> error
            good[: len(good) // 2],  # truncated JSON -> error
            json.dumps(missing_value),  # declared metric without value
            json.dumps(bad_aws),  # broken metadata
            json.dumps({**doc, "OrderOutcomes": "one"}),  # non-numeric value
            good,  # the only usable line
            "REPORT RequestId: 1f0c Duration: 12.3 ms",  # Lambda's REPORT: read, not EMF
        ]
    )
    result = parse_message(message, TS)
    assert sorted(result.errors) == ["invalid_emf", "invalid_json", "invalid_value", "missing_value", "prefixed"]
    assert result.ignored_lines == 2
    assert [(r.request_id, r.duration_ms) for r in result.reports] == [("1f0c", 12.3)]
    assert len(result.records) == 1

    store = MetricStore()
    for reason in result.errors:
        store.inc("valerix_exporter_parse_errors", (("reason", reason),))
    for record in result.records:
        store.ingest(record)
    out = exposition(store)
    assert out["valerix_order_outcomes_total{namespace=Valerix,service=order}"] == 1.0
    assert out["valerix_exporter_parse_errors_total{reason=prefixed}"] == 1.0
    assert sum(v for k, v in out.items() if k.startswith("valerix_exporter_parse_errors_total")) == 5


def test_names_units_and_label_sanitising():
    assert snake_case("HttpRequestDuration") == "http_request_duration"
    assert snake_case("DLQDepth") == "dlq_depth"
    assert snake_case("ColdStart") == "cold_start"
    assert prometheus_name("HttpRequests", "Count") == ("valerix_http_requests", "counter")
    assert prometheus_name("RequestsTotal", "Count") == ("valerix_requests", "counter")
    assert prometheus_name("InventoryCallDuration", "Milliseconds") == (
        "valerix_inventory_call_duration_seconds",
        "histogram",
    )
    assert prometheus_name("Lag", "Microseconds") == ("valerix_lag_seconds", "histogram")
    assert prometheus_name("CircuitState", "None") == ("valerix_circuit_state", "gauge")
    assert prometheus_name("PayloadSize", "Bytes") == ("valerix_payload_size", "gauge")
    line = json.dumps(
        {
            "_aws": {
                "Timestamp": TS,
                "CloudWatchMetrics": [
                    {
                        "Namespace": "Valerix",
                        "Dimensions": [["FunctionVersion", "le"]],
                        "Metrics": [{"Name": "Lag", "Unit": "Microseconds"}, {"Name": "Raw"}],
                    }
                ],
            },
            "FunctionVersion": "$LATEST",
            "le": "x",
            "Lag": 250000,
            "Raw": 7,
        }
    )
    result = parse_message(line, TS)
    assert not result.errors
    assert result.records[0].label_dict == {"function_version": "$LATEST", "dim_le": "x"}
    store = MetricStore()
    for r in result.records:
        store.ingest(r)
    out = exposition(store)
    assert out["valerix_lag_seconds_sum{dim_le=x,function_version=$LATEST,namespace=Valerix}"] == 0.25
    assert out["valerix_raw{dim_le=x,function_version=$LATEST,namespace=Valerix}"] == 7.0  # no unit -> gauge


def test_state_round_trip_keeps_everything():
    from tests.obs_emf_samples import traffic_lines

    traffic = traffic_lines()
    store = MetricStore()
    assert feed(store, traffic.lines) == []
    copy = MetricStore()
    copy.load_dict(json.loads(json.dumps(store.to_dict())))
    assert exposition(copy) == exposition(store)
    assert build_summary(copy, now=TS / 1000) == build_summary(store, now=TS / 1000)
