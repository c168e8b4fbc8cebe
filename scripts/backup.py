#!/usr/bin/env python3
"""Run the deployed backup functions on demand (`make backup`, `make restore POINT=...`).

    python scripts/backup.py backup              # a restore point of each database now
    python scripts/backup.py list                # local restore points + external bundles
    python scripts/backup.py sync                # the daily external call (refused if made today;
                                                 # exit 3 refused, 4 in doubt: attempted, outcome unknown)
    python scripts/backup.py restore POINT       # restore into a fresh database and verify

POINT is a local point, `points/<service>/<stamp>.vbk`, or a point inside an external bundle,
`external:bundles/<YYYY-MM-DD>.tar:points/<service>/<stamp>.vbk` (both forms are printed by
`list`). The restore never touches the live database: it creates `<db>_restore_<stamp>_<hex>`,
verifies row counts and checksums, and prints its name; on any failure it drops it.

Target: the local cloud by default (function names and endpoint from .valerix/outputs.json,
written by `make up`); `--aws [--stack-name Valerix]` uses your AWS credentials and reads the
function names from the CloudFormation stack outputs.
"""

from __future__ import annotations

import argparse
import json
import sys

from infra.outputs import BACKUP_FUNCTION_NAME, BACKUP_RESTORE_FUNCTION_NAME, BACKUP_SYNC_FUNCTION_NAME
from scripts import deployed_function
from scripts.deployed_function import CliError

REPO = deployed_function.REPO
OUTPUTS_FILE = deployed_function.OUTPUTS_FILE
FUNCTION_OUTPUTS = {
    "backup": BACKUP_FUNCTION_NAME,
    "sync": BACKUP_SYNC_FUNCTION_NAME,
    "list": BACKUP_RESTORE_FUNCTION_NAME,
    "restore": BACKUP_RESTORE_FUNCTION_NAME,
}
# A restore can take minutes; never let the SDK retry a sync or a restore behind our back.
INVOKE_CONFIG = deployed_function.single_attempt(read_timeout=960)


def lambda_client_and_outputs(args: argparse.Namespace):
    return deployed_function.lambda_client_and_outputs(
        use_aws=args.aws, stack_name=args.stack_name, config=INVOKE_CONFIG
    )


invoke = deployed_function.invoke


def print_listing(result: dict) -> None:
    points = result.get("points", [])
    print(f"local restore points ({len(points)}):")
    for p in points:
        print(f"  {p['point']}  {p['createdAt']}  {p['size']:>10} B  sha256 {p['sha256'][:16]}…")
    bundles = result.get("bundles", [])
    print(f"external bundles ({len(bundles)}):  restore with external:<bundle>:<point>")
    for b in bundles:
        print(f"  {b['bundle']}  {b['size']:>10} B")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(FUNCTION_OUTPUTS))
    parser.add_argument("point", nargs="?", help="restore point (restore only)")
    parser.add_argument("--service", choices=["order", "inventory"], help="backup/list: only this service")
    parser.add_argument("--json", action="store_true", help="print the raw JSON result")
    parser.add_argument("--aws", action="store_true", help="use real AWS (your credentials) instead of the local cloud")
    parser.add_argument("--stack-name", default="Valerix")
    args = parser.parse_args(argv)
    if args.command == "restore" and not args.point:
        parser.error("restore needs POINT (see `python scripts/backup.py list`)")

    try:
        client, outputs = lambda_client_and_outputs(args)
        function_name = outputs.get(FUNCTION_OUTPUTS[args.command])
        if not function_name:
            raise CliError(f"stack output {FUNCTION_OUTPUTS[args.command]} missing: is the backup construct deployed?")
        payload: dict = {}
        if args.command == "backup" and args.service:
            payload = {"services": [args.service]}
        elif args.command == "list":
            payload = {"list": True, **({"service": args.service} if args.service else {})}
        elif args.command == "restore":
            payload = {"point": args.point}
        if args.command in ("backup", "restore", "sync"):
            print(f"{args.command}: invoking {function_name} …", file=sys.stderr)
        result = invoke(client, function_name, payload)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    if args.json or args.command != "list":
        print(json.dumps(result, indent=2))
    else:
        print_listing(result)
    if args.command == "sync" and isinstance(result, dict) and result.get("status") == "refused":
        print(f"sync refused: {result.get('reason')}", file=sys.stderr)
        return 3
    if args.command == "sync" and isinstance(result, dict) and result.get("status") == "in_doubt":
        print(f"sync not attempted, today's outcome unknown: {result.get('reason')}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
