"""Load generation: run a list of request bodies at a fixed concurrency.

Invariant: at most `concurrency` requests are in flight at any moment, and
a new one starts as soon as one finishes (closed loop), so the level keeps
exactly `concurrency` requests busy until the list runs out.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

import httpx

from infer.bench.sse import RequestResult, stream_request


class Progress:
    """A plain-text progress bar: rewritten in place on a TTY, else a line per 10%."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, width: int = 24):
        self.label = label
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self.failed = 0
        self.start = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1

    def line(self) -> str:
        """The current progress text (no newline)."""
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        return (
            f"{self.label} [{bar}] {self.done}/{self.total}"
            f" failed {self.failed} elapsed {elapsed:.1f}s"
        )

    def update(self, ok: bool) -> None:
        """Record one finished request and redraw."""
        self.done += 1
        self.failed += 0 if ok else 1
        if self.tty:
            self.stream.write("\r" + self.line())
        else:
            decile = 10 * self.done // self.total
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def run_level(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    bodies: list[dict],
    concurrency: int,
    progress: Progress | None = None,
) -> tuple[list[RequestResult], float]:
    """Send every body with `concurrency` workers; returns results in body order and wall seconds."""
    results: list[RequestResult | None] = [None] * len(bodies)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(bodies)):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            result = await stream_request(client, url, bodies[index], headers)
            results[index] = result
            if progress is not None:
                progress.update(result.ok)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(bodies))))))
    duration = time.perf_counter() - start
    if progress is not None:
        progress.close()
    return [r for r in results if r is not None], duration
