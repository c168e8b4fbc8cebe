"""Render a self-contained Prometheus config from observability/prometheus/prometheus.yml.

``python -m valerix_exporter.promconfig --target 127.0.0.1:9108 --out .valerix/prometheus/prometheus.yml
[--scrape-interval 1s] [--evaluation-interval 1s] [--base observability/prometheus/prometheus.yml]``

The shipped config stays the single source (rules, job name, intervals); the copy gets the
exporter target(s) as static targets and absolute rule file paths, so it can live anywhere
(the Makefile's state directory, a test's temp directory).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import yaml

DEFAULT_BASE = Path(__file__).resolve().parents[2] / "prometheus" / "prometheus.yml"
JOB = "valerix-exporter"


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    return float(duration)


def render(
    targets: list[str],
    base: Path | str = DEFAULT_BASE,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> dict:
    base = Path(base).resolve()
    config = yaml.safe_load(base.read_text())
    glob_ = config.setdefault("global", {})
    if scrape_interval:
        glob_["scrape_interval"] = scrape_interval
    if evaluation_interval:
        glob_["evaluation_interval"] = evaluation_interval
    if "scrape_timeout" in glob_ and _seconds(glob_["scrape_timeout"]) > _seconds(glob_["scrape_interval"]):
        glob_["scrape_timeout"] = glob_["scrape_interval"]
    rule_files = []
    for pattern in config.get("rule_files", []):
        full = pattern if Path(pattern).is_absolute() else str(base.parent / pattern)
        rule_files.extend(sorted(glob.glob(full)) or [full])
    config["rule_files"] = rule_files
    for job in config.get("scrape_configs", []):
        if job.get("job_name") == JOB:
            job.pop("file_sd_configs", None)
            job["static_configs"] = [{"targets": list(targets)}]
    return config


def write(path: Path | str, config: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m valerix_exporter.promconfig", description=__doc__.split("\n")[1])
    p.add_argument("--target", action="append", required=True, help="host:port of an exporter (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--base", default=str(DEFAULT_BASE))
    p.add_argument("--scrape-interval")
    p.add_argument("--evaluation-interval")
    args = p.parse_args(argv)
    out = write(args.out, render(args.target, args.base, args.scrape_interval, args.evaluation_interval))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
