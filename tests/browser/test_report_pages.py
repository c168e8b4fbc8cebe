"""The HTML pages of `make verify` / `make bench` render in headless Chromium: every chart
loads (an SVG drawn from the run's data, next to the page), nothing on the console.
Needs Chromium only, not the local cloud: the reports are written from synthetic runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import bench, verify
from tests.browser.conftest import RESULTS
from tests.synthetic_runs import bench_samples, verify_run

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.browser


def render(browser, page_path: Path, shot: str) -> dict:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: console.append(str(exc)))
    try:
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all(
            "figure img",
            "els => els.map(e => ({src: e.getAttribute('src'), width: e.naturalWidth, "
            "shown: e.getBoundingClientRect().height}))",
        )
        RESULTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(RESULTS / shot), full_page=True)
        return {"images": images, "console": console, "title": page.title(), "facts": page.inner_text("table")}
    finally:
        page.close()


def test_the_verify_page_shows_its_three_charts(browser, tmp_path):
    report = verify_run(5, per_phase=15, every=3)
    verify.write_report(report, tmp_path / "verify-report.md", tmp_path / "verify-report.json")
    shown = render(browser, tmp_path / "verify-report.html", "verify-report.png")
    assert shown["console"] == []
    assert shown["title"] == "Valerix verify report"
    assert [i["src"] for i in shown["images"]] == [
        "verify-charts/latency-over-time.svg",
        "verify-charts/answer-mix.svg",
        "verify-charts/latency-cdf.svg",
    ]
    assert all(i["width"] > 0 and i["shown"] > 100 for i in shown["images"]), shown["images"]
    assert "45" in shown["facts"]  # the run's order count


def test_the_bench_page_shows_its_three_charts(browser, tmp_path):
    samples, marks = bench_samples(9)
    results = {
        "measured_at": "2026-01-01T00:00:00",
        "machine": {"cpus": 2},
        "clients": 2,
        "seconds": 3,
        "happy_p50_ms": 31.0,
    }
    report = bench.write_report(results, samples, marks, samples[0]["sent_at"], tmp_path / "bench.json")
    shown = render(browser, report.with_suffix(".html"), "bench-report.png")
    assert shown["console"] == []
    assert len(shown["images"]) == 3
    assert all(i["width"] > 0 and i["shown"] > 100 for i in shown["images"]), shown["images"]
    assert "happy_p50_ms" in shown["facts"] and "31.0" in shown["facts"]
