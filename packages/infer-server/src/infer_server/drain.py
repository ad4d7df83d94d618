"""Graceful drain on SIGTERM: new requests get 503, in-flight ones finish.

While draining, the listener stays open and every new HTTP request, on a new
connection or on one kept alive from before, is answered 503 `shutting_down`
with `Retry-After` and `Connection: close`; `/health` and `/ready` still
answer (/ready with 503) so probes see the state. Requests that started
before the drain run to their end; each response that starts during the
drain carries `Connection: close` so no client reuses the connection.
`Drain.idle()` returns once no request that started before the drain is left.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError

PROBE_PATHS = frozenset({"/health", "/ready"})


class Drain:
    """The drain state of one gateway app: a flag and a count of live requests."""

    def __init__(self) -> None:
        self.draining = False
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.draining = True

    def enter(self) -> None:
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def idle(self) -> None:
        """Wait until no admitted request is left (new ones are refused once draining)."""
        await self._idle.wait()


def _closing(scope: Scope, message: Message) -> Message:
    """The response start with `Connection: close` (HTTP/1.x only; h2 forbids the header)."""
    if scope.get("http_version", "1.1") not in ("1.0", "1.1"):
        return message
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
    return {**message, "headers": [*headers, (b"connection", b"close")]}


class DrainMiddleware:
    """Refuse new requests while draining; count the admitted ones."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and drain.draining:
                message = _closing(scope, message)
            await send(message)

        if drain.draining and scope["path"] not in PROBE_PATHS:
            error = APIError(
                503,
                "The server is shutting down; retry on another instance",
                code="shutting_down",
                headers={"Retry-After": "5"},
            )
            await error.response()(scope, receive, send_closing)
            return
        drain.enter()
        try:
            await self.app(scope, receive, send_closing)
        finally:
            drain.leave()
