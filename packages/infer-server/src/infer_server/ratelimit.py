"""Per-client request rate limit (`--rate-limit N` requests per minute).

A token bucket per client: the bearer key when the gateway has an API key,
else the client address. Each bucket holds at most N tokens and refills at
N per minute; a request takes one token or is answered 429 with
Retry-After (whole seconds until a token is back). /health and /ready are
never limited, nor are the web UI's static pages. Memory is bounded: at most `max_clients` buckets are kept,
the least recently used are forgotten first (a forgotten client starts full,
which only ever errs towards letting a request through).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import APIError
from .middleware import exempt


class TokenBuckets:
    """Token buckets by client key; `take(key)` returns 0 (allowed) or seconds to wait."""

    def __init__(
        self,
        per_minute: int,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be > 0")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: tokens, t

    def take(self, key: str) -> float:
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def client_key(scope: Scope, by_api_key: bool) -> str:
    """The bearer token (when keys are in use) or the client's address."""
    if by_api_key:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                return "key:" + value.decode("latin-1").partition(" ")[2].strip()
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")


class RateLimitMiddleware:
    """Answer 429 (OpenAI error JSON, Retry-After) to a client past its rate."""

    def __init__(
        self,
        app: ASGIApp,
        per_minute: int | None,
        by_api_key: bool,
        is_public: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute) if per_minute else None
        self.by_api_key = by_api_key
        self._is_public = is_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.buckets is None or exempt(scope, self._is_public):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(client_key(scope, self.by_api_key))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            error = APIError(
                429,
                f"Rate limit of {int(self.buckets.capacity)} requests per minute reached; "
                f"retry in {seconds}s",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(seconds)},
            )
            await error.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)
