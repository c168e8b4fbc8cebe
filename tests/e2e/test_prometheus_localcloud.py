"""The Prometheus `make up` starts (issue 18): on loopback only, with the project's own alert
rules (observability/prometheus/rules) loaded, scraping this cloud's exporter, its state private."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import yaml

from valerix_localcloud import cli, processes

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "observability" / "prometheus" / "rules"


def project_rules() -> set[str]:
    names = set()
    for path in RULES.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule.get("alert") or rule.get("record") for rule in group["rules"]}
    return names


def test_prometheus_answers_on_loopback_with_the_projects_rules(localcloud):
    url = localcloud.outputs["prometheus_url"]
    assert urlparse(url).hostname == "127.0.0.1"
    body = httpx.get(f"{url}/api/v1/rules", timeout=10).json()
    assert body["status"] == "success"
    groups = body["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    expected = project_rules()
    assert {"OrderApiLatencyHigh", "DlqNotEmpty", "CircuitOpen", "HighErrorRate"} <= expected
    assert loaded == expected
    # the rule files are the project's own, not a copy that could drift
    assert {Path(group["file"]).parent for group in groups} == {RULES.resolve()}
    alerting = [rule for group in groups for rule in group["rules"] if rule["type"] == "alerting"]
    assert alerting and all(rule["health"] in ("ok", "unknown") for rule in alerting), alerting


def test_prometheus_scrapes_this_clouds_exporter(localcloud):
    url = localcloud.outputs["prometheus_url"]
    scrape_url = f"{localcloud.metrics_url}/metrics"
    deadline = time.monotonic() + 60
    targets: list = []
    while time.monotonic() < deadline:
        targets = httpx.get(f"{url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        if any(t["scrapeUrl"] == scrape_url and t["health"] == "up" for t in targets):
            break
        time.sleep(1)
    else:
        pytest.fail(f"exporter target never up: {targets}")
    # the exporter's own metrics arrive, e.g. its poll counter
    result = httpx.get(f"{url}/api/v1/query", params={"query": "valerix_exporter_polls_total"}, timeout=10).json()[
        "data"
    ]["result"]
    assert result and float(result[0]["value"][1]) > 0


def test_prometheus_is_recorded_listens_only_on_loopback_and_keeps_its_state_private(localcloud):
    port = urlparse(localcloud.outputs["prometheus_url"]).port
    mine = [entry for entry in processes.cloud_processes(cli.STATE) if entry.component == processes.PROMETHEUS]
    assert len(mine) == 1, mine
    sockets = processes.listeners(mine)
    assert port in {s.port for s in sockets}
    assert [str(s) for s in sockets if not s.loopback] == []
    folder = cli.STATE / "prometheus"
    for path in (folder, folder / "data"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (folder / "prometheus.yml", folder / "prometheus.pid", folder / "prometheus.log"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # what Prometheus writes itself (TSDB blocks, WAL) is owner-only too
    loose = [str(p) for p in (folder / "data").rglob("*") if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert loose == []
