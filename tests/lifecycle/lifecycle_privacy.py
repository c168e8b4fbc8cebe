"""What an attacker with a local account would look for after `make up`: secrets in files
other users may read, in the output, and on command lines (`ps`)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import psutil

# No secret lives in the LocalStack virtualenv; tens of thousands of files to skip.
SKIP_DIRS = {"localstack-venv"}
MAX_SCANNED_BYTES = 20 * 1024 * 1024


def secrets_of(checkout: Path) -> dict[str, str]:
    """The admin key and every database password `make up` made for `checkout`."""
    state = checkout / ".valerix"
    found = {"admin key": (state / "admin-api-key").read_text().strip()}
    for server in sorted((state / "pg").glob("*/server.json")):
        found[f"{server.parent.name} db password"] = json.loads(server.read_text())["password"]
    assert all(len(value) >= 16 for value in found.values()), "secrets look too short to search for"
    return found


def readable_secret_files(checkout: Path, secrets: dict[str, str]) -> list[str]:
    """Everything under `.valerix/` and `cdk.out/` that holds a secret and that a user other
    than the owner may read (a group/other read bit), and either folder if others may enter it."""
    needles = {name: value.encode() for name, value in secrets.items()}
    problems = []
    for root in (checkout / ".valerix", checkout / "cdk.out"):
        if not root.exists():
            continue
        if stat.S_IMODE(root.stat().st_mode) & 0o077:
            problems.append(f"{root} is {oct(stat.S_IMODE(root.stat().st_mode))}, not 0700")
        for dirpath, dirnames, filenames in os.walk(root):
            if Path(dirpath) == root:
                dirnames[:] = [name for name in dirnames if name not in SKIP_DIRS]
            for name in filenames:
                path = Path(dirpath) / name
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o044:
                    continue
                if info.st_size > MAX_SCANNED_BYTES:
                    continue
                data = path.read_bytes()
                leaked = [label for label, needle in needles.items() if needle in data]
                if leaked:
                    problems.append(f"{path} ({oct(stat.S_IMODE(info.st_mode))}) holds the {', '.join(leaked)}")
    return problems


def secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    return [label for label, value in secrets.items() if value in text]


class CommandLineWatcher:
    """Collects every command line seen while active (what `ps` shows every local user)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for process in psutil.process_iter(["cmdline"]):
                cmdline = process.info.get("cmdline")
                if cmdline:
                    self.seen.add("\0".join(cmdline))
            self._stop.wait(self.interval)

    def __enter__(self) -> CommandLineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def lines_with(self, secrets: dict[str, str]) -> list[str]:
        return [
            f"{label}: {line.replace(chr(0), ' ')[:200]}"
            for line in sorted(self.seen)
            for label, value in secrets.items()
            if value in line
        ]
