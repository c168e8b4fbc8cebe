"""A real Prometheus server for tests, pointed at any exporter (``host:port`` targets).

Usable outside this folder too (e.g. the end-to-end tests against the local cloud)::

    from tests.obs_prometheus import PrometheusServer
    with PrometheusServer(["127.0.0.1:9108"], tmp_path) as prom:
        prom.wait_for_target_up()
        value = prom.wait_for_value('sum(valerix_order_outcomes_total{status="CONFIRMED"})', lambda v: v >= 3)

or the ``prometheus_factory`` fixture from tests/conftest.py.
The config is rendered from observability/prometheus/prometheus.yml (rules included) with
``valerix_exporter.promconfig``; scrape and rule evaluation every second by default.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

from valerix_exporter import promconfig

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    def __init__(
        self,
        targets: list[str],
        workdir: Path | str,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        port: int | None = None,
    ):
        self.targets = [t.replace("http://", "").rstrip("/").removesuffix("/metrics") for t in targets]
        self.workdir = Path(workdir)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        promconfig.write(
            self.config_path,
            promconfig.render(
                self.targets, scrape_interval=self.scrape_interval, evaluation_interval=self.evaluation_interval
            ),
        )
        self._log = open(self.log_path, "wb")  # noqa: SIM115 -- lives as long as the server; closed by stop()
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- HTTP API ------------------------------------------------------------------------
    def api(self, path: str, **params) -> dict:
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant vector result: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        return self.api("query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        """The single value of a scalar-like query (None when the result is empty)."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_for_value(self, expr: str, predicate=lambda v: v is not None, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and predicate(last):
                return last
            time.sleep(0.5)
        raise AssertionError(f"{expr!r}: last value {last!r} after {timeout}s")

    def wait_for_target_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self.api("targets")["activeTargets"]
            if targets and all(t["health"] == "up" for t in targets):
                return
            time.sleep(0.5)
        raise AssertionError(f"targets not up: {self.api('targets')}")

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]
