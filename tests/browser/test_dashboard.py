"""The dashboard on the local cloud's S3 website, driven by headless Chromium.

Run: `.venv/bin/python -m pytest tests/browser -q -x` (brings the local cloud up if needed).
Screenshots land in test-results/browser/<test name>/.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SECOND = 1000  # Playwright timeouts are in ms


def expect_no_console_errors(dash) -> None:
    errors = dash.console_errors()
    assert not errors, "console errors:\n" + "\n".join(errors)


def badge_status(dash, order_id: str) -> str:
    return dash.order_row(order_id).get_attribute("data-status")


def test_placing_an_order_shows_it_confirmed(dash):
    dash.open()
    order_id = dash.place_order("widget", 1)
    row = dash.order_row(order_id)
    # Normally CONFIRMED on the sync path at once. The local cloud is shared with other test
    # suites (chaos, circuit), so a queued order that completes later is accepted too.
    dash.page.wait_for_selector(
        f'#order-list li[data-order-id="{order_id}"][data-status="CONFIRMED"]', timeout=90 * SECOND
    )
    assert row.locator(".badge").inner_text() == "CONFIRMED"
    path = row.get_attribute("data-path")
    assert f"{path} path" in row.inner_text()
    # the list survives a reload (localStorage)
    dash.page.reload()
    dash.page.wait_for_selector("body[data-ready=true]")
    assert badge_status(dash, order_id) == "CONFIRMED"
    dash.screenshot("confirmed")
    expect_no_console_errors(dash)


def _burst(api_url: str, n: int) -> list[int]:
    """n concurrent orders straight to the API: slow requests for the 30 s latency window."""

    def one(_):
        with httpx.Client(base_url=api_url, timeout=30.0) as client:
            response = client.post(
                "/orders", json={"productId": "widget", "quantity": 1}, headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            return response.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.slow
def test_latency_gremlin_queues_orders_and_raises_the_alert(dash, localcloud, gremlin_off):
    page = dash.page
    # under a 5 s inventory latency the order service's own health probe may say DOWN (503)
    dash.allowed_statuses = {(503, "/health/")}
    dash.open()
    page.wait_for_selector('#gremlin-pill[data-state="off"]', timeout=30 * SECOND)

    # the admin key is asked once (a dialog) when it is not known yet
    page.click("#forget-key")
    page.check("#g-latency-enabled")
    page.fill("#g-latency-delay", "5000")
    page.select_option("#g-latency-select", "every")
    page.fill("#g-latency-amount", "1")
    page.click("#gremlin-apply")
    page.wait_for_selector("#key-dialog[open]", timeout=5 * SECOND)
    page.fill("#admin-key", localcloud.admin_api_key)
    page.click("#key-save")
    page.wait_for_selector('#gremlin-pill[data-state="on"]', timeout=20 * SECOND)
    assert "latency 5000 ms" in page.inner_text("#gremlin-state")
    # the key lives in this tab's sessionStorage, never in localStorage
    assert page.evaluate("sessionStorage.getItem('valerix.adminKey')") == localcloud.admin_api_key
    assert page.evaluate("localStorage.getItem('valerix.adminKey')") is None
    page.wait_for_timeout(2500)  # inventory reads the gremlin through a ~1 s cache

    order_id = dash.place_order("widget", 1)
    row = dash.order_row(order_id)
    assert row.get_attribute("data-status") == "QUEUED", row.inner_text()
    assert row.get_attribute("data-path") == "queued"
    dash.screenshot("queued")

    # More slow traffic so the order service's 30 s average clearly passes 1 s. All at once:
    # once the circuit opens (5 failures) orders are answered fast and only dilute the average.
    statuses = _burst(localcloud.api_url, 5)
    assert all(s in (201, 202) for s in statuses), statuses
    page.wait_for_selector('#latency-indicator[data-state="alert"]', timeout=45 * SECOND)
    dash.screenshot("latency-alert")

    # the queued order completes without a reload
    page.wait_for_selector(f'#order-list li[data-order-id="{order_id}"][data-status="CONFIRMED"]', timeout=60 * SECOND)

    page.click("#gremlin-off")
    page.wait_for_selector('#gremlin-pill[data-state="off"]', timeout=20 * SECOND)
    # green again once the 30 s window's average is back under 1 s (+ exporter lag)
    page.wait_for_selector('#latency-indicator[data-state="ok"]', timeout=80 * SECOND)
    dash.screenshot("recovered")
    expect_no_console_errors(dash)


@pytest.mark.slow
def test_health_lights_follow_the_inventory_database(dash):
    from valerix_localcloud.cli import databases

    page = dash.page
    # while the database is down, inventory answers 503 to health probes and product reads
    dash.allowed_statuses = {(503, "/health/"), (503, "/products")}
    dash.open()
    # (the order service light itself may be red for a while when other suites running against
    # the same local cloud have opened its circuit; the lights under test must be green)
    for light in ("order-db", "inventory", "inventory-db"):
        page.wait_for_selector(f'#lights [data-light="{light}"][data-state="up"]', timeout=60 * SECOND)
    dash.screenshot("all-green")

    db = databases()["inventory"]
    db.stop()
    try:
        page.wait_for_selector('#lights [data-light="inventory-db"][data-state="down"]', timeout=40 * SECOND)
        page.wait_for_selector('#lights [data-light="inventory"][data-state="down"]', timeout=10 * SECOND)
        light = page.locator('#lights [data-light="inventory-db"]')
        assert light.locator(".light-reason").inner_text().strip(), "a failing check says why"
        assert light.get_attribute("title")
        assert page.locator('#lights [data-light="order-db"]').get_attribute("data-state") == "up"
        dash.screenshot("inventory-db-down")
    finally:
        db.start()
    page.wait_for_selector('#lights [data-light="inventory-db"][data-state="up"]', timeout=60 * SECOND)
    page.wait_for_selector('#lights [data-light="inventory"][data-state="up"]', timeout=30 * SECOND)
    dash.screenshot("recovered")
    expect_no_console_errors(dash)


def test_phone_width_has_no_horizontal_overflow(dash):
    page = dash.page
    dash.open(width=390, height=844)
    page.wait_for_selector('#product option[value="widget"]', state="attached", timeout=30 * SECOND)
    page.wait_for_selector('#lights [data-light="order"]:not([data-state="unknown"])', timeout=30 * SECOND)
    page.wait_for_selector("#metrics-table tbody tr[data-function]", timeout=30 * SECOND)
    overflow = page.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        const wide = [...document.querySelectorAll('body *')].filter((el) => {
            // scrolls inside itself / hidden
            if (el.closest('.table-wrap, dialog:not([open]), .skip-link')) return false;
            const r = el.getBoundingClientRect();
            return r.width > 0 && (r.right > width + 1 || r.left < -1);
        }).map((el) => el.id || el.className || el.tagName);
        return {scrollWidth: document.documentElement.scrollWidth, width, wide: wide.slice(0, 10)};
    }""")
    dash.screenshot("phone")
    assert overflow["scrollWidth"] <= overflow["width"], overflow
    assert not overflow["wide"], overflow
    expect_no_console_errors(dash)


@pytest.mark.slow
def test_run_scenario_tells_the_whole_story(dash, gremlin_off):
    page = dash.page
    dash.allowed_statuses = {(503, "/health/")}
    dash.open()
    page.wait_for_selector("#product option", state="attached", timeout=30 * SECOND)
    started = time.monotonic()
    page.click("#run-scenario")
    page.wait_for_selector('#order-list li[data-status="QUEUED"]', timeout=40 * SECOND)
    page.wait_for_selector('#latency-indicator[data-state="alert"]', timeout=40 * SECOND)
    dash.screenshot("scenario-red")
    page.wait_for_selector("#run-scenario:not([disabled])", timeout=120 * SECOND)
    log = page.inner_text("#scenario-log")
    dash.screenshot("scenario-done")
    assert "Switching the gremlin off" in log and "Could not switch" not in log, log
    # (not asserting the gremlin pill: other suites sharing the local cloud may flip the gremlin)
    # every order of the burst ends CONFIRMED or REJECTED, none lost
    page.wait_for_function(
        "() => !document.querySelector('#order-list li[data-status=\"QUEUED\"]')", timeout=60 * SECOND
    )
    assert time.monotonic() - started < 120, log
    expect_no_console_errors(dash)
