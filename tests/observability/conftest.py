"""Fixtures for the observability tests (exporter, Prometheus, promtool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.observability.obs_prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch):
    """Never touch real AWS from these tests."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def prometheus_factory(tmp_path_factory):
    """``start(targets=[...], **kw) -> PrometheusServer`` (a real Prometheus, stopped afterwards).

    Reusable against any exporter URL, e.g. the local cloud's ``metrics_url``:
    ``prom = prometheus_factory(["127.0.0.1:9108"]); prom.wait_for("sum(valerix_order_outcomes_total)", ...)``
    """
    started: list[PrometheusServer] = []

    def start(targets, **kwargs) -> PrometheusServer:
        server = PrometheusServer(targets, tmp_path_factory.mktemp("prometheus"), **kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
