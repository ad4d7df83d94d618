"""Overload admission: refuse at the door while the engine is known to be full.

The engine refuses a `GenerateRequest` with an `overloaded` error when its
waiting queue is full. Under a flood, each such request has already cost the
gateway a body parse, a chat template and a tokenization, so refusals queue
up behind that work. `OverloadGate` remembers the engine's last refusal and
lets `AdmissionMiddleware` answer 503 (Retry-After) before any of that work.

Invariant: the gate is shut only from an `overloaded` answer until the first
of: one of this gateway's engine requests ends (a final delta, any other
error, an abort sent: each frees a place in the engine), or `hold` seconds
pass (places freed by other gateways sharing the engine are invisible here).
A shut gate therefore never turns away a request that a single-gateway
engine would have taken, except for a place freed less than a message
round-trip ago.

`RefusalClock` measures "refused -> 503": the time from the engine's
`overloaded` answer reaching the gateway to the client's 503 starting.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infer_protocol import Message as EngineMessage
from infer_protocol import RequestError, TokenDelta

from .errors import APIError

GENERATING_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
REFUSAL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RefusalClock:
    """When (monotonic) the engine's `overloaded` answer for this HTTP request arrived."""

    __slots__ = ("refused_at",)

    def __init__(self) -> None:
        self.refused_at: float | None = None


# the HTTP request being handled in this task (and the tasks it starts); not shared state
_current: contextvars.ContextVar[RefusalClock | None] = contextvars.ContextVar(
    "infer_refusal_clock", default=None
)


class OverloadGate:
    """The engine's last word on its capacity, as this gateway saw it."""

    def __init__(self, hold: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold = hold
        self._clock = clock
        self._shut_until = 0.0
        self._clocks: dict[str, RefusalClock] = {}

    @property
    def shut(self) -> bool:
        return self._clock() < self._shut_until

    def open(self) -> None:
        """A place in the engine was freed (or the engine went away)."""
        self._shut_until = 0.0

    def watch(self, request_id: str) -> None:
        """Tie an engine request to the HTTP request handled in the current context."""
        clock = _current.get()
        if clock is not None:
            self._clocks[request_id] = clock

    def forget(self, request_id: str) -> None:
        self._clocks.pop(request_id, None)

    def observe(self, msg: EngineMessage) -> None:
        """Update from one message the engine sent (call for every message read)."""
        if isinstance(msg, RequestError):
            if msg.code == "overloaded":
                now = self._clock()
                self._shut_until = now + self.hold
                clock = self._clocks.get(msg.request_id)
                if clock is not None and clock.refused_at is None:
                    clock.refused_at = now
            elif msg.request_id:
                self.open()
        elif isinstance(msg, TokenDelta) and msg.finished:
            self.open()


class AdmissionMiddleware:
    """503 `overloaded` for generation requests while the gate is shut; times refusals.

    Counts 503 `overloaded` answers by who decided (`gateway` or `engine`) and
    observes, for the engine's, the seconds from its answer to the 503 starting.
    """

    def __init__(
        self,
        app: ASGIApp,
        gate: OverloadGate,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.gate = gate
        self._clock = clock
        self.refused = Counter(
            "infer_gateway_overload_refusals",
            "Generation requests answered 503 overloaded, by who refused them",
            ["by"],
            registry=registry,
        )
        self.latency = Histogram(
            "infer_gateway_refusal_latency_seconds",
            "From the engine's overloaded answer reaching the gateway to the 503 starting",
            buckets=REFUSAL_BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in GENERATING_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and self.gate.shut:
            self.refused.labels(by="gateway").inc()
            error = APIError(
                503,
                "The engine is overloaded (its waiting queue is full); retry later",
                code="overloaded",
                headers={"Retry-After": "1"},
            )
            await error.response()(scope, receive, send)
            return
        clock = RefusalClock()
        token = _current.set(clock)

        async def timed_send(message: Message) -> None:
            start = message["type"] == "http.response.start"
            if start and clock.refused_at is not None and message["status"] == 503:
                self.refused.labels(by="engine").inc()
                self.latency.observe(self._clock() - clock.refused_at)
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            _current.reset(token)
