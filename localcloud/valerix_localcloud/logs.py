"""`make logs`: the functions' CloudWatch Logs of the local cloud, for humans.

One line per log event: time, the function (its own colour on a terminal), the correlation id
(Powertools' `correlation_id`, `-` when the line has none), the level and the message. Reads
the local cloud's CloudWatch Logs with FilterLogEvents, polling once a second (`logs tail` is
awscli v2 only); `--no-follow` prints what is there and exits. EMF metric lines are metrics,
not logs: hidden unless `--emf`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TextIO

from infra.outputs import FUNCTION_NAME_SUFFIX

# Powertools Logger's own keys; any other key of a JSON line is context worth showing.
POWERTOOLS_KEYS = {
    "level",
    "location",
    "message",
    "timestamp",
    "service",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
    "correlation_id",
    "xray_trace_id",
    "sampling_rate",
    "exception",
    "exception_name",
    "stack_trace",
}
COLOURS = ["36", "33", "35", "32", "34", "31", "96", "93", "95", "92", "94", "91"]
OVERLAP_MS = 5_000  # events can be stored a little after their timestamp: re-read, drop by id
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


class LogsError(RuntimeError):
    pass


def parse_since(value: str, now: float | None = None) -> int:
    """`30s`, `10m`, `2h`, `1d` ago, or an ISO time; returns epoch milliseconds."""
    now = time.time() if now is None else now
    match = _DURATION.match(value.strip())
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return int((now - seconds) * 1000)
    try:
        return int(datetime.fromisoformat(value.strip()).timestamp() * 1000)
    except ValueError:
        raise LogsError(f"--since {value!r}: expected a duration like 30s, 10m, 2h, 1d or an ISO time") from None


def function_names(stack_outputs: dict[str, str], stack_name: str) -> dict[str, str]:
    """{short name: function name} of the stack's functions (`order-api` -> `Valerix-order-api`)."""
    names = sorted(value for key, value in stack_outputs.items() if key.endswith(FUNCTION_NAME_SUFFIX))
    prefix = f"{stack_name}-"
    return {name[len(prefix) :] if name.startswith(prefix) else name: name for name in names}


def select(functions: dict[str, str], wanted: str | None) -> dict[str, str]:
    """The functions named in `wanted` (comma-separated short or full names); all when empty."""
    if not wanted:
        return functions
    chosen = {}
    for item in (part.strip() for part in wanted.split(",") if part.strip()):
        matches = {short: full for short, full in functions.items() if item in (short, full)}
        if not matches:
            raise LogsError(f"no function {item!r} in the stack; choose from: {', '.join(functions)}")
        chosen.update(matches)
    return chosen


@dataclasses.dataclass
class Line:
    timestamp: int
    function: str
    correlation_id: str
    level: str
    text: str


def _all_emf(message: str) -> bool:
    """True when the event is nothing but EMF documents (a flush may ship several in one event,
    one per line or back to back)."""
    decoder, position, found = json.JSONDecoder(), 0, 0
    while True:
        while position < len(message) and message[position].isspace():
            position += 1
        if position == len(message):
            return found > 0
        try:
            doc, position = decoder.raw_decode(message, position)
        except ValueError:
            return False
        if not isinstance(doc, dict) or "_aws" not in doc:
            return False
        found += 1


def parse_event(function: str, event: dict[str, Any], show_emf: bool = False) -> Line | None:
    """One CloudWatch Logs event as a Line, or None for what is hidden (EMF, blank lines)."""
    message = event.get("message", "").rstrip("\n")
    if not message.strip():
        return None
    stamp = int(event.get("timestamp", 0))
    try:
        doc = json.loads(message)
    except ValueError:
        doc = None
    if doc is None and not show_emf and _all_emf(message):
        return None  # several EMF documents in one event (one flush per line, shipped together)
    if not isinstance(doc, dict):
        # START/END/REPORT, print() output, tracebacks: as they are.
        return Line(stamp, function, "-", "", message)
    if "_aws" in doc and not show_emf:
        return None
    if "_aws" in doc:
        return Line(stamp, function, str(doc.get("correlation_id") or "-"), "EMF", message)
    text = str(doc.get("message", ""))
    extra = {key: value for key, value in doc.items() if key not in POWERTOOLS_KEYS}
    if extra:
        text += " " + " ".join(
            f"{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in extra.items()
        )
    if doc.get("exception"):
        text += "\n" + str(doc["exception"])
    return Line(stamp, function, str(doc.get("correlation_id") or "-"), str(doc.get("level", "")), text)


class Formatter:
    def __init__(self, functions: Iterable[str], colour: bool) -> None:
        ordered = sorted(functions)
        self.width = max((len(name) for name in ordered), default=0)
        self.colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(ordered)}
        self.colour = colour

    def __call__(self, line: Line) -> str:
        when = datetime.fromtimestamp(line.timestamp / 1000).strftime("%H:%M:%S.%f")[:-3]
        name = f"{line.function:{self.width}}"
        if self.colour:
            name = f"\x1b[{self.colours.get(line.function, '0')}m{name}\x1b[0m"
        level = f"{line.level:7} " if line.level else ""
        head = f"{when} {name} | {line.correlation_id} | "
        body = line.text.replace("\n", "\n" + " " * len(f"{when} {line.function:{self.width}} | "))
        return f"{head}{level}{body}"


class LogTail:
    """Polls the log groups of `functions` ({short: full name}); yields each event once."""

    def __init__(self, logs_client: Any, functions: dict[str, str], start_ms: int, show_emf: bool = False) -> None:
        self.client = logs_client
        self.groups = {f"/aws/lambda/{full}": short for short, full in functions.items()}
        self.cursor = dict.fromkeys(self.groups, start_ms)
        self.seen: dict[str, dict[str, int]] = {group: {} for group in self.groups}
        self.show_emf = show_emf

    def _events(self, group: str, start_ms: int) -> list[dict[str, Any]]:
        events, token = [], None
        while True:
            kwargs = {"logGroupName": group, "startTime": start_ms}
            if token:
                kwargs["nextToken"] = token
            try:
                page = self.client.filter_log_events(**kwargs)
            except self.client.exceptions.ResourceNotFoundException:
                return []  # the function has not run yet: no log group
            events += page.get("events", [])
            token = page.get("nextToken")
            if not token or not page.get("events"):
                return events

    def poll(self) -> list[Line]:
        lines = []
        for group, short in self.groups.items():
            start = self.cursor[group]
            seen = self.seen[group]
            for event in self._events(group, max(0, start - OVERLAP_MS) if seen else start):
                key = (
                    event.get("eventId") or f"{event.get('logStreamName')}|{event['timestamp']}|{event.get('message')}"
                )
                if key in seen:
                    continue
                seen[key] = int(event["timestamp"])
                self.cursor[group] = max(self.cursor[group], int(event["timestamp"]))
                line = parse_event(short, event, self.show_emf)
                if line:
                    lines.append(line)
            horizon = self.cursor[group] - OVERLAP_MS
            self.seen[group] = {key: ts for key, ts in seen.items() if ts >= horizon}
        lines.sort(key=lambda line: line.timestamp)
        return lines


def run(
    logs_client: Any,
    functions: dict[str, str],
    since_ms: int,
    follow: bool,
    out: TextIO,
    colour: bool,
    show_emf: bool = False,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    tail = LogTail(logs_client, functions, since_ms, show_emf)
    fmt = Formatter(functions, colour)
    try:
        while True:
            for line in tail.poll():
                print(fmt(line), file=out, flush=True)
            if not follow:
                return 0
            sleep(interval)
    except KeyboardInterrupt:
        return 0


def use_colour(choice: str, out: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return out.isatty()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--function", "-f", default=None, help="only these functions (comma-separated, e.g. order-api); default all"
    )
    parser.add_argument("--since", default="10m", help="start this long ago (30s, 10m, 2h, 1d) or at an ISO time")
    parser.add_argument(
        "--no-follow",
        dest="follow",
        action="store_false",
        help="print what is there and exit (default: follow until ctrl-C)",
    )
    parser.add_argument("--color", "--colour", dest="color", choices=["auto", "always", "never"], default="auto")
    parser.add_argument("--emf", action="store_true", help="also show EMF metric lines")


def main(args: argparse.Namespace, outputs: dict[str, Any] | None, logs_client_factory: Callable[[], Any]) -> int:
    if not outputs:
        print("the local cloud is not up (no .valerix/outputs.json): run `make up`", file=sys.stderr)
        return 1
    try:
        functions = select(function_names(outputs["stack"], outputs.get("stack_name", "")), args.function)
        since = parse_since(args.since)
    except LogsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.follow:
        print(f"following {', '.join(functions)} (ctrl-C to stop)", file=sys.stderr, flush=True)
    return run(
        logs_client_factory(), functions, since, args.follow, sys.stdout, use_colour(args.color, sys.stdout), args.emf
    )
