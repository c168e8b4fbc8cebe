#!/usr/bin/env python3
"""Run the deployed reconcile function now and print its report (`make reconcile`).

    python scripts/reconcile.py                      # the local cloud (.valerix/outputs.json)
    python scripts/reconcile.py --stale-minutes 10   # PENDING/QUEUED orders older than 10 min are problems
    python scripts/reconcile.py --since 2h           # only orders/reservations of the last 2 hours
                                                     # (or an ISO time: 2026-01-31T12:00:00+00:00)
    python scripts/reconcile.py --aws [--stack-name Valerix]

The function (functions/reconcile) reads both databases with their read-only logins and the
DLQ depths; it repairs nothing. This script prints one line per problem, naming its kind and
the order (or queue), and writes the report to .valerix/reconcile-report.json and .md (0600).

Exit status: 0 clean; 1 problems found (each named on stdout); 2 the check could not run
(no local cloud, the function failed — e.g. a database unreachable).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path

from infra.outputs import RECONCILE_FUNCTION_NAME
from scripts import deployed_function
from scripts.deployed_function import CliError
from valerix_localcloud.private import private_dir, write_private

REPO = deployed_function.REPO
OUTPUTS_FILE = deployed_function.OUTPUTS_FILE
REPORT_DIR = REPO / ".valerix"
FUNCTION_OUTPUT = RECONCILE_FUNCTION_NAME
# The function may run for up to 5 minutes; one attempt (a retry of a slow run only doubles the load).
INVOKE_CONFIG = deployed_function.single_attempt(read_timeout=330)
EXIT_CLEAN, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


_RELATIVE = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def since_argument(value: str) -> str:
    """`30m` / `2h` / `1d` back from now, or an ISO-8601 time with its UTC offset."""
    match = _RELATIVE.match(value.strip())
    if match:
        delta = dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (dt.datetime.now(dt.UTC) - delta).isoformat()
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither 30m/2h/1d nor an ISO-8601 time with a UTC offset (2026-01-31T12:00:00+00:00)"
        )
    return parsed.isoformat()


def lambda_client_and_outputs(args: argparse.Namespace):
    return deployed_function.lambda_client_and_outputs(
        use_aws=args.aws, stack_name=args.stack_name, config=INVOKE_CONFIG
    )


def invoke(client, function_name: str, payload: dict) -> dict:
    result = deployed_function.invoke(client, function_name, payload)
    if not isinstance(result, dict) or result.get("status") not in ("clean", "problems"):
        raise CliError(f"{function_name} answered something that is not a reconciliation report: {result!r}")
    return result


def problem_line(problem: dict) -> str:
    """`<kind>: <message>`; every message names its order or queue (functions/reconcile/checks.py)."""
    return f"{problem['kind']}: {problem['message']}"


def markdown(report: dict) -> str:
    lines = [
        "# Reconciliation report",
        "",
        f"- checked at: {report['checkedAt']}",
        f"- status: **{report['status']}**",
        f"- orders: {report['counts']['orders']}, reservations: {report['counts']['reservations']}",
        f"- stale limit: {report['staleMinutes']} min",
        f"- window: {('created since ' + report['since']) if report.get('since') else 'everything'}",
        f"- DLQ depths: {', '.join(f'{k} {v}' for k, v in report['dlqDepths'].items()) or 'none checked'}",
        "",
        "| kind | problems |",
        "|---|---|",
        *(f"| {kind} | {count} |" for kind, count in report["problemCounts"].items()),
        "",
    ]
    if report["problems"]:
        lines += ["## Problems (nothing was repaired)", "", "| kind | order / queue | what |", "|---|---|---|"]
        for p in report["problems"]:
            lines.append(f"| {p['kind']} | {p.get('orderId') or p.get('queue', '')} | {p['message']} |")
        if report.get("truncated"):
            lines += ["", f"{report['truncated']} more problem(s) not listed (the counts above are complete)."]
    else:
        lines.append("No problems.")
    return "\n".join(lines) + "\n"


def write_reports(report: dict, directory: Path) -> tuple[Path, Path]:
    private_dir(directory)
    json_path, md_path = directory / "reconcile-report.json", directory / "reconcile-report.md"
    write_private(json_path, json.dumps(report, indent=2) + "\n")
    write_private(md_path, markdown(report))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stale-minutes", type=int, help="override the function's RECONCILE_STALE_MINUTES (>= 1)")
    parser.add_argument(
        "--since",
        type=since_argument,
        help="only orders and reservations created since: 30m, 2h, 1d or an ISO-8601 time",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON report")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path(os.environ.get("VALERIX_RECONCILE_REPORT_DIR") or REPORT_DIR),
        help="where reconcile-report.json / .md go (default .valerix)",
    )
    parser.add_argument("--aws", action="store_true", help="use real AWS (your credentials) instead of the local cloud")
    parser.add_argument("--stack-name", default="Valerix")
    args = parser.parse_args(argv)
    if args.stale_minutes is not None and args.stale_minutes < 1:
        parser.error(f"--stale-minutes must be >= 1, got {args.stale_minutes}")

    try:
        client, outputs = lambda_client_and_outputs(args)
        function_name = outputs.get(FUNCTION_OUTPUT)
        if not function_name:
            raise CliError(f"stack output {FUNCTION_OUTPUT} missing: deploy the current stack (`make up`) first")
        payload: dict = {}
        if args.stale_minutes is not None:
            payload["staleMinutes"] = args.stale_minutes
        if args.since is not None:
            payload["since"] = args.since
        print(f"reconcile: invoking {function_name} …", file=sys.stderr)
        report = invoke(client, function_name, payload)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR

    json_path, md_path = write_reports(report, args.report_dir)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        counts = report["counts"]
        window = f", created since {report['since']}" if report.get("since") else ""
        print(
            f"checked {counts['orders']} orders, {counts['reservations']} reservations{window}, "
            f"DLQs {report['dlqDepths']} (stale limit {report['staleMinutes']} min)"
        )
        for problem in report["problems"]:
            print(problem_line(problem))
        if report.get("truncated"):
            print(f"… and {report['truncated']} more (see {json_path})")
        total = sum(report["problemCounts"].values())
        print("clean: no problems" if report["status"] == "clean" else f"{total} problem(s); nothing was repaired")
    print(
        f"report: {json_path.relative_to(REPO) if json_path.is_relative_to(REPO) else json_path}, {md_path.name}",
        file=sys.stderr,
    )
    return EXIT_CLEAN if report["status"] == "clean" else EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
