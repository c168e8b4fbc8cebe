"""A caller's deadline, carried from the order API to the reserve function (issue 17, item 2).

On the wire it is an absolute instant, `deadlineEpochMs` (ReserveRequest, functions/common/
contracts.py), not a remaining budget: whatever happens between the order API's decision and the
reserve function's first line (the Invoke's transit, an inventory cold start, API queueing)
comes out of it, as it does out of the caller's patience. The price is a dependency on
synchronised clocks, which Lambda has (Amazon Time Sync) and one machine has trivially. Each side
converts it once, to and from its own `time.monotonic()`, so nothing later depends on the wall
clock stepping.
"""

from __future__ import annotations

import dataclasses
import time

__all__ = ["Deadline"]


@dataclasses.dataclass(frozen=True)
class Deadline:
    """The `time.monotonic()` instant by which the work must be done (committed or given up)."""

    at: float

    @classmethod
    def from_epoch_ms(
        cls, epoch_ms: int, *, wall_now: float | None = None, monotonic_now: float | None = None
    ) -> Deadline:
        wall_now = time.time() if wall_now is None else wall_now
        monotonic_now = time.monotonic() if monotonic_now is None else monotonic_now
        return cls(monotonic_now + (epoch_ms / 1000.0 - wall_now))

    def epoch_ms(self, *, wall_now: float | None = None, monotonic_now: float | None = None) -> int:
        wall_now = time.time() if wall_now is None else wall_now
        monotonic_now = time.monotonic() if monotonic_now is None else monotonic_now
        return int((wall_now + (self.at - monotonic_now)) * 1000.0)

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def remaining_ms(self) -> int:
        return int(self.remaining() * 1000.0)

    def passed(self) -> bool:
        return self.remaining() <= 0.0
