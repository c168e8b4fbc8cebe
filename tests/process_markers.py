"""Finding test processes by a marker argument (shared by the executor's unit and e2e tests)."""

from __future__ import annotations

import os


def processes_named(marker: str) -> list[int]:
    """Live processes with `marker` as an argument (a zombie's command line is empty)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    if marker.encode() in cmdline.read().split(b"\0"):
                        found.append(int(entry.name))
            except OSError:
                pass
    return found
