"""The dashboard shows each gremlin setting's safety switch: the time left, then "expired (off)"
once the setting has switched itself off (issue 17 item 3).

The database fault used here is `percentage: 0` (switched on, never hits a transaction), so the
test changes nothing for other suites sharing the local cloud."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SECOND = 1000  # Playwright timeouts are in ms


def test_the_remaining_time_is_shown_and_an_expired_setting_is_off(dash, admin, gremlin_off):
    page = dash.page
    dash.allowed_statuses = {(503, "/health/")}
    admin.delete("/gremlin").raise_for_status()
    puts: list[dict] = []
    page.on(
        "request", lambda r: puts.append(json.loads(r.post_data)) if r.method == "PUT" and "/gremlin" in r.url else None
    )
    dash.open()
    page.wait_for_selector('#gremlin-pill[data-state="off"]', timeout=30 * SECOND)

    page.check("#g-database-enabled")
    page.select_option("#g-database-fault", "exhausted")
    page.select_option("#g-database-select", "percentage")
    page.fill("#g-database-amount", "0")
    page.fill("#g-expiry-minutes", "2")
    page.click("#gremlin-apply")
    page.wait_for_selector('#gremlin-pill[data-state="on"]', timeout=20 * SECOND)
    assert puts and puts[-1]["database"] == {
        "enabled": True,
        "fault": "exhausted",
        "percentage": 0,
        "expiresInSeconds": 120,
    }
    assert "database connections exhausted" in page.inner_text("#gremlin-state")
    assert re.fullmatch(r"database: off in (1 min [0-5]\d s|2 min 00 s)", page.inner_text("#gremlin-expiry")), (
        page.inner_text("#gremlin-expiry")
    )

    # Set elsewhere with a short expiry: the dashboard's next read shows it expired and off.
    admin.put("/gremlin", json={"database": {"percentage": 0, "expiresInSeconds": 1}}).raise_for_status()
    page.wait_for_function(
        "() => document.querySelector('#gremlin-expiry').textContent === 'database: expired (off)'", timeout=30 * SECOND
    )
    page.wait_for_selector('#gremlin-pill[data-state="off"]', timeout=10 * SECOND)
    assert dash.console_errors() == []
