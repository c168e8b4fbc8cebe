"""Prometheus config, alert rules (promtool) and the Grafana dashboard: every query must refer to
metrics and labels the exporter really exports for a known input."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import time
from collections.abc import Set as AbstractSet
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.obs_emf_samples import traffic_lines
from valerix_exporter import promconfig
from valerix_exporter.app import Config, Exporter

# moto only: fake credentials, never a real AWS profile
pytestmark = pytest.mark.usefixtures("fake_aws_credentials")

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "observability" / "prometheus"
GRAFANA_DIR = REPO / "observability" / "grafana"
RULES = sorted((PROM_DIR / "rules").glob("*.yml"))
DASHBOARD = GRAFANA_DIR / "dashboards" / "valerix.json"


def promtool(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def test_promtool_check_config():
    promtool("check", "config", str(PROM_DIR / "prometheus.yml"))


def test_promtool_check_config_of_rendered_copy(tmp_path):
    out = promconfig.write(
        tmp_path / "prometheus.yml",
        promconfig.render(["127.0.0.1:19108"], scrape_interval="1s", evaluation_interval="1s"),
    )
    promtool("check", "config", str(out))
    cfg = yaml.safe_load(out.read_text())
    assert cfg["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:19108"]}]
    assert all(Path(p).is_absolute() and Path(p).exists() for p in cfg["rule_files"])


def test_promtool_check_rules():
    promtool("check", "rules", *map(str, RULES))


def test_promtool_test_rules():
    tests = sorted((PROM_DIR / "tests").glob("*.yml"))
    assert tests
    result = promtool("test", "rules", *map(str, tests))
    assert "SUCCESS" in result.stdout


# ---- metric names -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, dict[str, set[str]]]:
    """sample name -> {label name -> values seen} of the exporter's /metrics for known input."""
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        logs, sqs = session.client("logs"), session.client("sqs")
        logs.create_log_group(logGroupName="/aws/lambda/valerix-order-api")
        logs.create_log_stream(logGroupName="/aws/lambda/valerix-order-api", logStreamName="s")
        now = int(time.time() * 1000)
        logs.put_log_events(
            logGroupName="/aws/lambda/valerix-order-api",
            logStreamName="s",
            logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(traffic_lines().lines)],
        )
        dlq = sqs.create_queue(QueueName="valerix-inventory-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        main = sqs.create_queue(
            QueueName="valerix-inventory",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})},
        )["QueueUrl"]
        exporter = Exporter(
            Config(state_dir=str(tmp_path_factory.mktemp("st")), queue_urls={"inventory": main}), session=session
        )
        exporter.poll_once()
        text = generate_latest(exporter.registry).decode()
        exporter.close()
    out: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = out.setdefault(s.name, {})
            for k, v in s.labels.items():
                labels.setdefault(k, set()).add(v)
    # series Prometheus itself adds to every scrape
    out["up"] = {"job": {"valerix-exporter"}, "instance": set()}
    return out


KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    "atan2",
}


def selectors(expr: str) -> tuple[list[tuple[str, list[tuple[str, str, str]]]], set[str]]:
    """([(metric name, [(label, op, value)])], grouping label names) of a PromQL expression."""
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors / subqueries, incl. $__rate_interval
    grouping: set[str] = set()
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        grouping |= {x.strip() for x in m.group(2).split(",") if x.strip()}
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    found = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", expr):
        name, matchers, call = m.groups()
        if call or name in KEYWORDS:
            continue
        pairs = re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers or "")
        found.append((name, pairs))
    return found, grouping


def check_expr(expr: str, exported, allowed_extra: AbstractSet[str] = frozenset()) -> list[str]:
    problems = []
    found, grouping = selectors(expr)
    assert found, f"no metric in {expr!r}"
    labels_here: set[str] = {"le"}
    for name, matchers in found:
        if name in allowed_extra:
            continue
        if name not in exported:
            problems.append(f"{name} is not exported (in {expr!r})")
            continue
        labels_here |= set(exported[name])
        for label, op, value in matchers:
            if label not in exported[name]:
                problems.append(f"{name} has no label {label} (in {expr!r})")
            elif op == "=" and exported[name][label] and value not in exported[name][label]:
                problems.append(f'{name}{{{label}="{value}"}} never exported (values {sorted(exported[name][label])})')
    for label in grouping - labels_here:
        problems.append(f"grouping label {label} not on the metrics of {expr!r}")
    return problems


def dashboard_exprs() -> list[str]:
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(DASHBOARD.read_text()))
    return exprs


def test_selector_extraction_itself():
    found, grouping = selectors(
        "histogram_quantile(0.95, sum by (le, outcome) "
        '(rate(valerix_x_bucket{service="order",kind!="a"}[$__rate_interval])))'
        " / on(service) group_left max(up)"
    )
    assert found == [("valerix_x_bucket", [("service", "=", "order"), ("kind", "!=", "a")]), ("up", [])]
    assert grouping == {"le", "outcome", "service"}


def test_dashboard_queries_use_exported_metrics(exported):
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    problems = [p for e in exprs for p in check_expr(e, exported)]
    assert not problems, "\n".join(problems)
    used = {name for e in exprs for name, _ in selectors(e)[0]}
    for needed in (
        "valerix_http_request_duration_seconds_bucket",
        "valerix_order_outcomes_total",
        "valerix_fallbacks_total",
        "valerix_circuit_state",
        "valerix_queue_depth",
        "valerix_gremlin_injections_total",
    ):
        assert needed in used, f"dashboard lacks {needed}"


def test_check_expr_catches_mistakes(exported):
    assert check_expr("sum(rate(valerix_http_request_duration_bucket[1m]))", exported)
    assert check_expr('sum(valerix_order_outcomes_total{state="CONFIRMED"})', exported)
    assert check_expr('sum(valerix_order_outcomes_total{status="CONFIRMD"})', exported)
    assert check_expr("sum by (reason) (valerix_order_outcomes_total)", exported)


def test_rule_queries_use_exported_metrics(exported):
    records = set()
    exprs = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                exprs.append(rule["expr"])
                if "record" in rule:
                    records.add(rule["record"])
    problems = [p for e in exprs for p in check_expr(e, exported, records)]
    assert not problems, "\n".join(problems)


def test_dashboard_queries_are_valid_promql(tmp_path):
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": e.replace("$__rate_interval", "1m")}
                    for i, e in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    promtool("check", "rules", str(path))


def test_dashboard_json_is_generated_and_provisioned():
    # A script, not a package: run from its file (its `__main__` block does not run).
    render = runpy.run_path(str(GRAFANA_DIR / "build_dashboard.py"))["render"]
    assert DASHBOARD.read_text() == render(), "run python observability/grafana/build_dashboard.py"
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for word in ("percentiles", "orders by status", "fallbacks", "circuit", "dlq", "gremlin"):
        assert word in titles
    ds = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert all(p["datasource"]["uid"] == uid for p in dash["panels"])
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "valerix.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/valerix"
