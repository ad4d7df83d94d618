"""Rate limit for answering and logging bad frames.

A peer that floods the engine with garbage must not make it log without
bound nor queue answers without bound (the ROUTER has no send high-water
mark, so answers to a peer that never reads would pile up in memory).
Invariant: at most `burst` bad frames are answered and logged at once and
`per_second` after that; the rest are only counted, and the count is
reported with the next frame that is let through.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class BadFrameLimiter:
    """A token bucket over bad frames; `admit()` says whether to answer and log this one."""

    def __init__(
        self,
        per_second: float = 20.0,
        burst: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self.suppressed = 0  # bad frames dropped silently since the last admitted one
        self.total = 0

    def admit(self) -> bool:
        self.total += 1
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        """The count of frames dropped silently since the last call (and reset it)."""
        count, self.suppressed = self.suppressed, 0
        return count
