"""The charts of `make verify` and `make bench` are drawn from the run's own records (issue 18):
two different runs give different pictures, and what each picture holds is what the run measured
(points per phase and answer, the mix counts, one CDF line per phase, the gremlin's switches)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from scripts import bench, report_charts, verify
from tests.synthetic_runs import bench_samples, verify_run

REPO = Path(__file__).resolve().parents[2]

SVG = "{http://www.w3.org/2000/svg}"


def group(svg: Path, gid: str):
    root = ET.parse(svg).getroot()
    return next((el for el in root.iter() if el.get("id") == gid), None)


def points(svg: Path, gid: str) -> int:
    """How many markers a scatter group drew (matplotlib writes one <use> per point)."""
    element = group(svg, gid)
    return 0 if element is None else sum(1 for el in element.iter(f"{SVG}use"))


def ids(svg: Path, prefix: str) -> set[str]:
    return {el.get("id", "") for el in ET.parse(svg).getroot().iter() if el.get("id", "").startswith(prefix)}


def test_verify_charts_reflect_the_run_and_differ_between_runs(tmp_path):
    runs = {"a": verify_run(1, per_phase=12, every=3), "b": verify_run(2, per_phase=20, every=4)}
    for name, report in runs.items():
        folder = tmp_path / name
        folder.mkdir()
        verify.write_report(report, folder / "verify-report.md", folder / "verify-report.json")

    for name, report in runs.items():
        folder = tmp_path / name
        charts = folder / "verify-charts"
        timeline, mix, cdf = charts / "latency-over-time.svg", charts / "answer-mix.svg", charts / "latency-cdf.svg"
        for phase in verify.PHASES:
            answers = Counter(str(r.http_status) for r in report.orders if r.phase == phase)
            # one point per order, in the colour of its first answer
            assert points(timeline, f"points-{phase}-201") == answers["201"]
            assert points(timeline, f"points-{phase}-202") == answers["202"]
            # the mix bar of each answer carries its count
            assert f"mix-{phase}-201-{answers['201']}" in ids(mix, f"mix-{phase}-")
            assert f"mix-{phase}-202-{answers['202']}" in ids(mix, f"mix-{phase}-")
            assert group(cdf, f"cdf-{phase}") is not None
        # the gremlin's switches: one vertical line each
        assert len(ids(timeline, "mark-")) == len(report.gremlin_marks) == 6
        markdown = (folder / "verify-report.md").read_text()
        page = (folder / "verify-report.html").read_text()
        for svg in (timeline, mix, cdf):
            relative = svg.relative_to(folder).as_posix()
            assert f"]({relative})" in markdown  # embedded in the markdown
            assert f'src="{relative}"' in page  # and shown on the page
        assert "verify-report.html" in markdown

    for chart in ("latency-over-time.svg", "answer-mix.svg", "latency-cdf.svg"):
        first = (tmp_path / "a" / "verify-charts" / chart).read_bytes()
        second = (tmp_path / "b" / "verify-charts" / chart).read_bytes()
        assert first != second, f"{chart} is the same for two different runs"


def test_the_same_run_draws_the_same_bytes(tmp_path):
    """No date or random ids in the SVGs: a difference between runs is a difference in data."""
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        verify.write_report(verify_run(7, 9, 3), tmp_path / name / "verify-report.md", tmp_path / name / "r.json")
    for chart in ("latency-over-time.svg", "answer-mix.svg", "latency-cdf.svg"):
        assert (tmp_path / "one" / "verify-charts" / chart).read_bytes() == (
            tmp_path / "two" / "verify-charts" / chart
        ).read_bytes()


def test_bench_report_embeds_charts_of_its_own_requests(tmp_path):
    samples, marks = bench_samples(3)
    out = tmp_path / "bench.json"
    results = {
        "measured_at": "2026-01-01T00:00:00",
        "machine": {"cpus": 2},
        "clients": 2,
        "seconds": 3,
        "happy_p50_ms": 100.0,
        "happy_rps": 12.0,
        "cold_start_ms": {"Valerix-order-api": 250.0},
    }
    report = bench.write_report(results, samples, marks, samples[0]["sent_at"] - 1, out)
    assert report == tmp_path / "bench-report.md"
    charts = tmp_path / "bench-charts"
    timeline, cdf = charts / "latency-over-time.svg", charts / "latency-cdf.svg"
    per_phase = Counter(s["phase"] for s in samples)
    for phase, n in per_phase.items():
        answer = next(s["answer"] for s in samples if s["phase"] == phase)
        assert points(timeline, f"points-{phase}-{answer}") == n
        assert group(cdf, f"cdf-{phase}") is not None  # each phase against the baseline
    assert len(ids(timeline, "mark-")) == len(marks)
    text = report.read_text()
    assert "| `happy_p50_ms` | 100.0 | <= 40: MISSED |" in text
    assert "cold_start_ms[Valerix-order-api]" in text
    assert re.search(r"!\[[^]]+\]\(bench-charts/latency-cdf\.svg\)", text)
    assert (tmp_path / "bench-report.html").exists()

    other = tmp_path / "other"
    other.mkdir()
    samples2, marks2 = bench_samples(4)
    bench.write_report(results, samples2[:-5], marks2, samples2[0]["sent_at"] - 1, other / "bench.json")
    assert (other / "bench-charts" / "latency-cdf.svg").read_bytes() != cdf.read_bytes()


@pytest.mark.parametrize("samples", [[], [report_charts.Sample("only", 0.0, 5.0, "error")]])
def test_charts_of_an_empty_or_failed_run_still_draw(tmp_path, samples):
    charts = report_charts.write_charts(samples, [], tmp_path / "x-report.md")
    assert [(tmp_path / c.file).exists() for c in charts] == [True, True, True]
    if samples:
        assert points(tmp_path / "x-charts" / "latency-over-time.svg", "points-only-other") == 1
