"""Progress of `make verify` / `make bench`: phase, n/N orders, elapsed, ETA; plain lines when the
output is not a terminal (CI logs), a live bar when it is."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from scripts.run_progress import RunProgress

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_when_not_a_terminal_show_phase_count_elapsed_and_eta():
    out, clock = io.StringIO(), Clock()
    with RunProgress(stream=out, clock=clock, every_s=5) as progress:
        assert not progress.interactive  # a StringIO is no terminal
        with progress.phase("latency", total=10) as phase:
            for _ in range(4):
                clock.now += 2
                phase.advance()
    lines = out.getvalue().splitlines()
    # one line per 5 s at most (the 3rd order, at 6 s), then the end of the phase
    assert lines == ["[latency] 3/10 orders, 6.0 s elapsed, ETA 14 s", "[latency] done: 4/10 orders in 8.0 s"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_timed_phase_counts_what_it_did_and_its_eta_is_the_time_left():
    out, clock = io.StringIO(), Clock()
    with RunProgress(stream=out, clock=clock, every_s=1) as progress:
        phase = progress.phase("happy", seconds=30)
        clock.now += 12
        phase.advance(40)
        clock.now += 1
        assert phase.line() == "[happy] 40 orders, 13.0 s elapsed, ETA 17 s"
        phase.finish()
    assert out.getvalue().splitlines() == [
        "[happy] 40 orders, 12.0 s elapsed, ETA 18 s",
        "[happy] done: 40 orders in 13.0 s",
    ]


def test_eta_is_unknown_before_the_first_order_and_minutes_are_readable():
    clock = Clock()
    progress = RunProgress(stream=io.StringIO(), clock=clock)
    phase = progress.phase("crash", total=300)
    assert phase.line().endswith("ETA ?")
    clock.now += 10
    phase.advance(20)  # 2 orders/s, 280 left
    assert phase.line() == "[crash] 20/300 orders, 10.0 s elapsed, ETA 2 min 20 s"


def test_counts_from_many_threads_add_up():
    out = io.StringIO()
    with RunProgress(stream=out, every_s=3600) as progress, progress.phase("error", total=800) as phase:

        def advance_100() -> None:
            for _ in range(100):
                phase.advance()

        threads = [threading.Thread(target=advance_100) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert out.getvalue().splitlines()[-1].startswith("[error] done: 800/800 orders")


def test_on_a_terminal_a_live_bar_shows_the_phase_and_its_count():
    out = io.StringIO()
    with RunProgress(stream=out, interactive=True) as progress:
        progress.write("==> phase latency")
        with progress.phase("latency", total=5) as phase:
            for _ in range(5):
                phase.advance()
    screen = out.getvalue()
    assert "==> phase latency" in screen
    assert "latency" in screen and "5/5 orders" in screen
    assert "\x1b[" in screen  # drawn with terminal control sequences, redrawn in place
