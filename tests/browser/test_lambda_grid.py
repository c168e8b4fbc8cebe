"""The dashboard's "Lambda functions" grid (issue 18): per function, peak memory used against
its MemorySize, cold starts with init duration, p50/p95 — read from the functions' REPORT lines
by the exporter; and the link to the Prometheus `make up` started."""

from __future__ import annotations

import re

import httpx
import pytest

from infra.outputs import INVENTORY_API_FUNCTION_NAME
from tests.browser.test_dashboard import expect_no_console_errors

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_the_grid_shows_memory_cold_starts_and_percentiles_per_function(dash, localcloud):
    # recent invocations, so the 5-minute percentile window has samples
    for _ in range(3):
        assert httpx.get(f"{localcloud.api_url}/products", timeout=30).status_code == 200
    name = localcloud.stack[INVENTORY_API_FUNCTION_NAME]
    memory_size = localcloud.client("lambda").get_function_configuration(FunctionName=name)["MemorySize"]

    dash.open()
    tile = dash.page.locator(f'#lambda-grid li[data-function="{name}"]')
    tile.locator('[data-field="latency"]').filter(has_text=re.compile(r"\d")).wait_for(timeout=60_000)

    memory = tile.locator('[data-field="memory"]').inner_text()
    match = re.match(r"(\d+) / (\d+) MB \(([\d.]+) %\)", memory)
    assert match, memory
    used, size = int(match.group(1)), int(match.group(2))
    assert size == memory_size and 0 < used <= size * 2, memory
    meter = tile.locator('[role="meter"]')
    assert meter.get_attribute("aria-valuenow") == str(used)
    assert int(tile.locator('[data-field="cold-starts"]').inner_text()) >= 1
    assert re.fullmatch(r"[\d.]+ m?s / [\d.]+ m?s", tile.locator('[data-field="init"]').inner_text())
    assert re.fullmatch(r"[\d.]+ m?s / [\d.]+ m?s", tile.locator('[data-field="latency"]').inner_text())
    assert int(tile.locator('[data-field="invocations"]').inner_text()) >= 3
    # the short name (without the stack prefix), the full one on hover
    assert tile.locator(".lambda-name").get_attribute("title") == name

    link = dash.page.locator("#prometheus-link")
    assert link.get_attribute("href") == f"{localcloud.outputs['prometheus_url']}/"
    # and what it points at is the Prometheus with the project's alerts
    alerts = httpx.get(f"{localcloud.outputs['prometheus_url']}/api/v1/rules", params={"type": "alert"}, timeout=10)
    assert "OrderApiLatencyHigh" in alerts.text
    dash.screenshot("lambda-grid")
    expect_no_console_errors(dash)
