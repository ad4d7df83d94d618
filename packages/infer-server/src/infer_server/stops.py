"""Stop strings: hold back text that may be the start of one, cut at a match.

Invariant: text returned by `push` never contains a stop string and never
ends with a proper prefix of one; once a stop string is found, `stopped` is
True and the text before it (and only that) has been returned.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feeds text through; finds the earliest stop string, possibly spanning pieces."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False
        self.matched: str | None = None

    def push(self, text: str) -> str:
        """Add text; return what is safe to emit now."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buf = self._held + text
        best: tuple[int, str] | None = None
        for stop in self._stops:
            at = buf.find(stop)
            if at != -1 and (best is None or at < best[0]):
                best = (at, stop)
        if best is not None:
            self.stopped = True
            self.matched = best[1]
            self._held = ""
            return buf[: best[0]]
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of buf that is a proper prefix of a stop string."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buf)), longest, -1):
                if buf.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def flush(self) -> str:
        """The generation ended without a match: release what was held."""
        if self.stopped:
            return ""
        held, self._held = self._held, ""
        return held
