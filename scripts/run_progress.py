"""Progress of `make verify` and `make bench` while they run: phase, n/N orders, elapsed, ETA.

On a terminal: a rich progress bar (rich is well kept, already in the dev virtualenv through
schemathesis, draws from its own refresh thread while worker threads only count, and its
columns give elapsed and remaining time as they are). Not on a terminal (CI, a pipe, a test's
captured output): rich would draw nothing until the end and tqdm would write carriage-return
redraws into the log, so plain lines are printed instead, one every `every_s` seconds and one
at the end of the phase, e.g.

    [latency] 40/100 orders, 12.3 s elapsed, ETA 18 s

A phase either counts towards a known number of orders (verify: `total=100`), or runs for a
fixed time and counts what it did (bench: `seconds=30`); its ETA is then the time left.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress


def _fmt_s(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class Phase:
    """One phase's counter. `advance()` may be called from any thread."""

    def __init__(self, owner: RunProgress, name: str, total: int | None, seconds: float | None, unit: str) -> None:
        self.owner = owner
        self.name = name
        self.total = total
        self.seconds = seconds
        self.unit = unit
        self.done_count = 0
        self.started = owner.clock()
        self._last_line = self.started
        self._lock = threading.Lock()
        self._task = None
        if owner.live is not None:
            self._task = owner.live.add_task(
                name, total=total if total is not None else seconds, count=self._count_text()
            )

    # ---- what is shown ----------------------------------------------------------------------
    def _count_text(self) -> str:
        if self.total is not None:
            return f"{self.done_count}/{self.total} {self.unit}"
        return f"{self.done_count} {self.unit}"

    def eta(self, now: float) -> float | None:
        elapsed = now - self.started
        if self.total is not None:
            if self.done_count == 0:
                return None
            return max(0.0, elapsed / self.done_count * (self.total - self.done_count))
        if self.seconds is not None:
            return max(0.0, self.seconds - elapsed)
        return None

    def line(self, now: float | None = None, final: bool = False) -> str:
        now = self.owner.clock() if now is None else now
        elapsed = now - self.started
        if final:
            return f"[{self.name}] done: {self._count_text()} in {elapsed:.1f} s"
        eta = self.eta(now)
        return f"[{self.name}] {self._count_text()}, {elapsed:.1f} s elapsed, ETA {'?' if eta is None else _fmt_s(eta)}"

    # ---- counting -----------------------------------------------------------------------------
    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done_count += n
            now = self.owner.clock()
            if self._task is not None and self.owner.live is not None:
                completed = self.done_count if self.total is not None else min(now - self.started, self.seconds or 0)
                self.owner.live.update(self._task, completed=completed, count=self._count_text())
            elif now - self._last_line >= self.owner.every_s:
                self._last_line = now
                self.owner.write(self.line(now))

    def finish(self) -> None:
        with self._lock:
            if self._task is not None and self.owner.live is not None:
                total = self.total if self.total is not None else self.seconds
                self.owner.live.update(self._task, completed=total, total=total, count=self._count_text())
                self.owner.live.stop_task(self._task)
            else:
                self.owner.write(self.line(final=True))

    def __enter__(self) -> Phase:
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


class RunProgress:
    """`with RunProgress() as progress: with progress.phase("latency", total=100) as p: p.advance()`"""

    def __init__(
        self,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = 5.0,
    ) -> None:
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.clock = clock
        self.every_s = every_s
        self.live: Progress | None = None
        self._write_lock = threading.Lock()

    def __enter__(self) -> RunProgress:
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.live = live = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TextColumn("elapsed"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream, force_terminal=True),
                refresh_per_second=4,
            )
            live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def phase(self, name: str, total: int | None = None, seconds: float | None = None, unit: str = "orders") -> Phase:
        return Phase(self, name, total, seconds, unit)

    def write(self, text: str) -> None:
        """A plain line (also fine while the bar is drawn: rich prints it above the bar)."""
        if self.live is not None:
            self.live.console.print(text, markup=False, highlight=False)
            return
        with self._write_lock:
            print(text, file=self.stream, flush=True)
