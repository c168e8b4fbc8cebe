"""The dashboard's "Game day" panel shows the latest `make gameday` scorecard (issue 17 item 6):
the result, every SLO with its target, actual value and pass/fail, the per-phase numbers; the
scorecard's text is shown as text; before any game day it says so.

The scorecards are built by scripts/gameday.py's own `scorecard()` from a synthetic run and
published with its own `publish()`, exactly as `make gameday` does (the e2e test runs the real
thing); whatever the bucket held before is put back afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.outputs import WEBSITE_BUCKET_NAME
from scripts import gameday
from scripts.order_load import InvariantResult, OrderRecord, Violation
from tests.browser.test_dashboard import expect_no_console_errors

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

KEY = "gameday/scorecard.json"
HOSTILE = '<img src=x onerror="window.__pwned=1">'


@pytest.fixture
def scorecard_slot(localcloud):
    """Put back whatever scorecard the website bucket held before the test."""
    s3 = localcloud.client("s3")
    bucket = localcloud.stack[WEBSITE_BUCKET_NAME]
    before = s3.get_object(Bucket=bucket, Key=KEY)["Body"].read()
    yield
    s3.put_object(Bucket=bucket, Key=KEY, Body=before, ContentType="application/json", CacheControl="no-store")


def synthetic_card(tmp_path: Path, *, fail: bool) -> dict:
    path = tmp_path / "scenario.toml"
    path.write_text(
        'name = "browser"\n[[phases]]\nname = "steady"\nseconds = 10\n'
        '[[phases]]\nname = "database-outage"\nseconds = 10\n'
        'gremlin = { database = { fault = "unreachable" } }\n'
    )
    scenario = gameday.load_scenario(path)
    orders = [
        OrderRecord(
            "steady",
            "p",
            1,
            1_700_000_000.0 + n,
            latency_ms=90.0,
            http_status=201,
            order_id=f"s-{n}",
            final_status="CONFIRMED",
        )
        for n in range(8)
    ]
    orders += [
        OrderRecord(
            "database-outage",
            "p",
            1,
            1_700_000_010.0 + n,
            latency_ms=60.0 if n else 2600.0,
            http_status=202,
            order_id=f"d-{n}",
            final_status="CONFIRMED",
        )
        for n in range(4)
    ]
    violations = [Violation("not_final", "order d-3 never reached a final state (QUEUED)", "d-3")] if fail else []
    if fail:
        orders[-1].final_status = "QUEUED"
    run = gameday.Run(
        started_at=1_700_000_000.0,
        orders=orders,
        initial_stock={"p": 100},
        invariants=InvariantResult({"p": 100 - sum(o.final_status == "CONFIRMED" for o in orders)}, violations),
        reconcile={
            "status": "clean",
            "problems": [],
            "problemCounts": {},
            "counts": {"orders": 12, "reservations": 12},
        },
        finished_at=1_700_000_060.0,
    )
    slo = gameday.SloSpec(answer_share=0.9 if fail else 0.5)
    card = gameday.scorecard(scenario.model_copy(update={"slo": slo}), gameday.plan(scenario, 1.0), 1.0, run)
    card["phases"][1]["fault"] = HOSTILE  # the panel must show whatever the file says as text
    return card


def cell(dash, phase: str, field: str) -> str:
    return dash.page.locator(f'#gameday-phases tr[data-phase="{phase}"] td[data-field="{field}"]').inner_text()


def test_the_panel_shows_the_latest_scorecard(dash, localcloud, scorecard_slot, tmp_path):
    card = synthetic_card(tmp_path, fail=True)
    assert card["status"] == "fail"
    gameday.publish(card, localcloud.outputs)

    dash.open()
    panel = dash.page.locator('#gameday-panel[data-status="fail"]')
    panel.wait_for(timeout=30_000)
    assert dash.page.locator("#gameday-result").inner_text() == "FAIL"
    summary = dash.page.locator("#gameday-summary").inner_text()
    assert 'Scenario "browser"' in summary and "12 orders, 1 lost" in summary

    # one row per SLO, as the scorecard says: the failing ones say FAIL and why
    slos = dash.page.locator("#gameday-slos tbody tr")
    assert slos.count() == len(card["slos"])
    for slo in card["slos"]:
        row = dash.page.locator(f'#gameday-slos tr[data-slo="{slo["id"]}"]')
        assert row.get_attribute("data-pass") == str(slo["pass"]).lower()
        text = row.inner_text()
        assert slo["name"] in text and slo["actual"] in text and ("PASS" if slo["pass"] else "FAIL") in text
    lost = dash.page.locator('#gameday-slos tr[data-slo="lost"]').inner_text()
    assert "order d-3 never reached a final state (QUEUED)" in lost
    latency = dash.page.locator('#gameday-slos tr[data-slo="latency"]').inner_text()
    assert "91.7 % (11 of 12)" in latency

    # the per-phase numbers
    assert dash.page.locator("#gameday-phases tbody tr").count() == 2
    assert [cell(dash, "steady", field) for field in ("orders", "201", "lost")] == ["8", "8", "0"]
    assert cell(dash, "steady", "fault") == "none"
    assert (cell(dash, "database-outage", "orders"), cell(dash, "database-outage", "202")) == ("4", "4")
    assert cell(dash, "database-outage", "within") == "75.0 %"
    assert cell(dash, "database-outage", "p99") == "2.60 s"
    assert cell(dash, "database-outage", "lost") == "1"
    assert cell(dash, "database-outage", "fault") == HOSTILE  # as text, not markup
    assert dash.page.evaluate("window.__pwned") is None
    dash.screenshot("gameday-fail")

    # a newer run replaces it (the panel polls; a reload shows it at once)
    passing = synthetic_card(tmp_path, fail=False)
    assert passing["status"] == "pass"
    gameday.publish(passing, localcloud.outputs)
    dash.page.reload()
    dash.page.locator('#gameday-panel[data-status="pass"]').wait_for(timeout=30_000)
    assert dash.page.locator("#gameday-result").inner_text() == "PASS"
    assert dash.page.locator('#gameday-slos tr[data-pass="false"]').count() == 0
    expect_no_console_errors(dash)


def test_before_any_game_day_the_panel_says_so(dash, localcloud, scorecard_slot):
    localcloud.client("s3").put_object(
        Bucket=localcloud.stack[WEBSITE_BUCKET_NAME],
        Key=KEY,
        Body=json.dumps({"status": "none"}).encode(),
        ContentType="application/json",
    )
    dash.open()
    dash.page.locator("#gameday-result").filter(has_text="none yet").wait_for(timeout=30_000)
    assert "make gameday" in dash.page.locator("#gameday-summary").inner_text()
    assert dash.page.locator("#gameday-tables").is_hidden()
    expect_no_console_errors(dash)
