"""Playwright (Python) driving Debian's Chromium against the dashboard on the S3 website.

Never downloads a browser: Chromium is `/usr/bin/chromium` (override with VALERIX_CHROMIUM).
Every test gets `dash`: a fresh page on the website with the admin key preset, a console-error
collector, and a screenshot saved under the test's own output directory on teardown.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = os.environ.get("VALERIX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
RESULTS = Path(__file__).resolve().parents[2] / "test-results" / "browser"

# Chromium logs every HTTP error answer of fetch() as a console error
# ("Failed to load resource: the server responded with a status of 503 ..."). The dashboard
# handles those answers on purpose (409 REJECTED, 503 DOWN, 403 wrong key), so a test lists
# the statuses it expects; anything else on the console (page errors, CORS, net::ERR_*) fails.
HTTP_STATUS_LOG = re.compile(r"Failed to load resource: the server responded with a status of (\d{3})")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Dashboard:
    """One browser page on the dashboard plus what the test needs around it."""

    def __init__(self, page, cloud, out_dir: Path) -> None:
        self.page = page
        self.cloud = cloud
        self.out_dir = out_dir
        self.console: list[str] = []
        # HTTP error answers the test expects, as (status, URL substring), e.g. (503, "/health/")
        self.allowed_statuses: set[tuple[int, str]] = set()
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))

    def _on_console(self, message) -> None:
        if message.type == "error":
            url = (message.location or {}).get("url", "")
            self.console.append(f"{message.text} [{url}]" if url else message.text)

    def open(self, width: int = 1280, height: int = 900) -> None:
        self.page.set_viewport_size({"width": width, "height": height})
        self.page.goto(self.cloud.web_url)
        self.page.wait_for_selector("body[data-ready=true]", timeout=30_000)

    def screenshot(self, name: str) -> Path:
        path = self.out_dir / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def console_errors(self) -> list[str]:
        errors = []
        for text in self.console:
            match = HTTP_STATUS_LOG.search(text)
            if match and any(
                int(match.group(1)) == status and where in text for status, where in self.allowed_statuses
            ):
                continue
            errors.append(text)
        return errors

    # ---- convenience -------------------------------------------------------------------------
    def order_row(self, order_id: str):
        return self.page.locator(f'#order-list li[data-order-id="{order_id}"]')

    def place_order(self, product_id: str, quantity: int = 1, timeout_ms: int = 40_000) -> str:
        """Place an order through the form; returns the new order's id (first row of the list)."""
        page = self.page
        page.wait_for_selector(f'#product option[value="{product_id}"]', state="attached", timeout=30_000)
        before = set(page.eval_on_selector_all("#order-list li", "els => els.map(e => e.dataset.orderId)"))
        page.select_option("#product", product_id)
        page.fill("#quantity", str(quantity))
        page.click("#place-order")
        page.wait_for_function(
            "(before) => [...document.querySelectorAll('#order-list li')]"
            ".some(e => !before.includes(e.dataset.orderId))",
            arg=list(before),
            timeout=timeout_ms,
        )
        ids = page.eval_on_selector_all("#order-list li", "els => els.map(e => e.dataset.orderId)")
        new = [i for i in ids if i not in before]
        assert new, page.text_content("#order-feedback")
        return new[0]


@pytest.fixture
def dash(browser, localcloud, request):
    out_dir = RESULTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # a clean slate: no order list from an earlier run; the admin key already known
    context.add_init_script(
        "try { if (location.protocol.startsWith('http') && !sessionStorage.getItem('valerix.test.init')) {"
        "  localStorage.clear(); sessionStorage.setItem('valerix.test.init', '1');"
        f"  sessionStorage.setItem('valerix.adminKey', {localcloud.admin_api_key!r});"
        "} } catch (e) { /* no storage on this document */ }"
    )
    page = context.new_page()
    dashboard = Dashboard(page, localcloud, out_dir)
    yield dashboard
    try:
        (out_dir / "console.txt").write_text("\n".join(dashboard.console) + "\n")
        dashboard.screenshot("final")
    finally:
        context.close()


@pytest.fixture
def admin(localcloud):
    """httpx client for the API with the admin key (gremlin switches done outside the page)."""
    with httpx.Client(
        base_url=localcloud.api_url, timeout=30.0, headers={"x-api-key": localcloud.admin_api_key}
    ) as client:
        yield client


@pytest.fixture
def gremlin_off(admin):
    """Whatever a test does to the gremlin, it is all off afterwards."""
    yield
    for _ in range(3):
        try:
            if admin.delete("/gremlin").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
