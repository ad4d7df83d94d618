"""The gateway's connection to the engine: one zmq.asyncio DEALER socket.

Invariants: one reader task owns `recv`; every message is routed by its
`request_id` to the queue registered for it (unknown ids are dropped).

Liveness has two layers. ZMTP heartbeats (answered by the engine's libzmq
I/O thread, so a long model step does not count as silence) drop the
connection when the engine process is gone or stopped for `dead_after`
seconds; the socket monitor reports that at once. Application pings every
`ping_interval` catch an engine whose loop is alive at the socket level but
has said nothing for `hang_after` seconds. Either way the engine is down:
every open stream receives an `EngineUnavailable` item and new requests are
refused until the engine answers again and its ModelInfo has been loaded
(then `connected` is True). zmq reconnects by itself.

An engine whose frames declare another protocol version is not connected:
that is logged once, and `last_error` (the /ready detail) names both
versions. A bad frame that names a waiting request fails that request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from infer_protocol import (
    PROTOCOL_VERSION,
    AbortRequest,
    Message,
    ModelInfo,
    ModelInfoQuery,
    Ping,
    Pong,
    ProtocolError,
    RequestError,
    decode,
    encode,
)
from infer_protocol.curve import HANDSHAKE_FAILURES, ClientKeys, apply_client, handshake_failure

from .admission import OverloadGate

log = logging.getLogger("infer_server.engine")
REFUSED_RETRY_S = 5.0  # after the engine refused this gateway's key, try again this much later


class EngineUnavailable(Exception):
    """The engine cannot be reached (down, restarting, or not started yet)."""


class EngineClient:
    """Request/response correlation over one DEALER socket."""

    def __init__(
        self,
        endpoint: str,
        *,
        ping_interval: float = 0.5,
        dead_after: float = 3.0,
        hang_after: float = 30.0,
        on_model_info: Callable[[ModelInfo], None] | None = None,
        curve: ClientKeys | None = None,
        on_pong: Callable[[Pong], None] | None = None,
        on_down: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.ping_interval = ping_interval
        self.dead_after = dead_after
        self.hang_after = max(hang_after, dead_after)
        self._monitor: zmq.asyncio.Socket | None = None
        self._on_model_info = on_model_info
        self._curve = curve
        self._refusal: str | None = None  # why the engine refused the last handshake
        self._on_model_info = on_model_info  # may raise to refuse the engine (not connected)
        self._on_pong = on_pong  # every Pong, before a pending model-info load starts
        self._on_down = on_down  # after a connected engine is marked down
        self._streams: set[str] = set()  # generation requests open on this engine
        self._ctx = zmq.asyncio.Context()
        self._sock: zmq.asyncio.Socket | None = None
        self._pending: dict[str, asyncio.Queue] = {}
        self._ids = itertools.count()
        self._tasks: list[asyncio.Task] = []
        self._last_seen = 0.0
        # loop.time() of the engine's last report (a Pong) that it was running requests
        self.busy_at = 0.0
        self._loading: asyncio.Task | None = None
        self.connected = False
        self.link_up = False  # the ZMTP connection is established (socket monitor)
        self.model_info: ModelInfo | None = None
        self.last_error: str | None = "engine not contacted yet"
        self.peer_version: int | None = None  # the engine's protocol version when it differs
        self.gate = OverloadGate()

    def set_hooks(
        self,
        on_model_info: Callable[[ModelInfo], None] | None = None,
        on_pong: Callable[[Pong], None] | None = None,
        on_down: Callable[[str], None] | None = None,
    ) -> None:
        self._on_model_info, self._on_pong, self._on_down = on_model_info, on_pong, on_down

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue for a peer that is not there
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, max(100, int(self.dead_after * 1000 / 4)))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.dead_after * 1000))
        if self._curve is not None:
            apply_client(sock, self._curve)
        self._monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILURES
        )
        sock.connect(self.endpoint)
        self._sock = sock
        self._tasks = [
            asyncio.create_task(self._reader()),
            asyncio.create_task(self._health()),
            asyncio.create_task(self._watch()),
        ]

    async def close(self) -> None:
        for task in [*self._tasks, self._loading]:
            if task is not None:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fail_all("the gateway is shutting down")
        if self._sock is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disable_monitor()
            self._sock.close(linger=0)
        if self._monitor is not None:
            self._monitor.close(linger=0)
        self._ctx.term()

    # ------------------------------------------------------------- sending

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def send(self, msg: Message) -> None:
        """Send without waiting; raise EngineUnavailable when it cannot go out now."""
        if self._sock is None:
            raise EngineUnavailable("engine client not started")
        fut = self._sock.send(encode(msg), flags=zmq.NOBLOCK)
        if fut.done() and fut.exception() is not None:
            raise EngineUnavailable(f"cannot send to the engine at {self.endpoint}")

    def open_stream(self, request_id: str) -> asyncio.Queue:
        """Register a request id; its messages arrive on the returned queue."""
        if not self.connected:
            raise EngineUnavailable(self.last_error or "engine not connected")
        queue: asyncio.Queue = asyncio.Queue()
        self._pending[request_id] = queue
        self._streams.add(request_id)
        self.gate.watch(request_id)
        return queue

    def release(self, request_id: str) -> None:
        self._pending.pop(request_id, None)
        self._streams.discard(request_id)
        self.gate.forget(request_id)

    def abort(self, request_id: str, reason: str = "client", keep_stream: bool = False) -> None:
        """Best-effort AbortRequest; also forgets the id, unless `keep_stream` (the caller
        then reads the engine's final "abort" delta and releases the id itself)."""
        if keep_stream:
            self.gate.forget(request_id)
        else:
            self.release(request_id)
        self.gate.open()  # the engine frees the request's place at its next step
        log.info("aborting %s in the engine (%s)", request_id, reason)
        with contextlib.suppress(EngineUnavailable):
            self.send(AbortRequest(request_id=request_id, reason=reason))

    async def query(self, msg: Message, timeout: float) -> Message:
        """Send a query (Ping, ModelInfoQuery, MetricsQuery) and wait for its answer."""
        queue: asyncio.Queue = asyncio.Queue()
        self._pending[msg.request_id] = queue
        try:
            self.send(msg)
            item = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            raise EngineUnavailable(f"engine did not answer within {timeout:g}s") from None
        finally:
            self._pending.pop(msg.request_id, None)
        if isinstance(item, Exception):
            raise item
        return item

    @property
    def running(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Generation requests this gateway has open on the engine."""
        return len(self._streams)

    # --------------------------------------------------------------- tasks

    async def _reader(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            try:
                frames = await self._sock.recv_multipart()
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as exc:
                log.warning("engine socket receive failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self._last_seen = loop.time()
            try:
                msg = decode(frames[-1])
            except ProtocolError as exc:
                self._bad_frame(exc)
                continue
            self.peer_version = None
            if isinstance(msg, Pong):
                if msg.running:
                    self.busy_at = self._last_seen
                if self._on_pong is not None:
                    self._on_pong(msg)
            self.gate.observe(msg)
            queue = self._pending.get(msg.request_id)
            if queue is not None:
                queue.put_nowait(msg)
            elif msg.request_id == "" and getattr(msg, "code", None) is not None:
                log.warning("engine reported: %s", getattr(msg, "message", msg))
            if not self.connected and self._loading is None:
                self._loading = asyncio.create_task(self._load_model_info())

    def _bad_frame(self, exc: ProtocolError) -> None:
        """A frame that did not decode: a version mismatch, or the request it names fails."""
        if exc.peer_version is not None:
            reason = (
                f"engine speaks protocol version {exc.peer_version}, this gateway "
                f"{PROTOCOL_VERSION}: run both from the same release"
            )
            if self.peer_version != exc.peer_version:
                log.error("%s (engine at %s)", reason, self.endpoint)
            self.peer_version = exc.peer_version
            if self.connected:
                self.mark_down(reason)
            self.last_error = reason
            return
        queue = self._pending.get(exc.request_id) if exc.request_id else None
        if queue is not None:
            queue.put_nowait(RequestError(exc.request_id, "bad_frame", str(exc)))
        log.warning("bad frame from the engine: %s", exc)

    async def _load_model_info(self) -> None:
        try:
            info = await self.query(ModelInfoQuery(request_id=self.new_id("info")), timeout=10.0)
            if not isinstance(info, ModelInfo):
                raise EngineUnavailable(f"expected ModelInfo, got {type(info).__name__}")
            if self._on_model_info is not None:
                self._on_model_info(info)
            self.model_info = info
            self.connected = True
            self.last_error = None
            log.info("engine connected at %s serving %s", self.endpoint, info.served_model_names)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"loading model info failed: {exc}"
            if error != self.last_error:  # a refused engine is asked again on every frame
                log.warning("%s", error)
            self.last_error = error
        finally:
            self._loading = None

    async def _health(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(EngineUnavailable):
                self.send(Ping(request_id=self.new_id("ping")))
            await asyncio.sleep(self.ping_interval)
            silent = loop.time() - self._last_seen
            if self.connected and silent > self.hang_after:
                self.mark_down(f"engine stopped answering for {silent:.1f}s")

    async def _watch(self) -> None:
        """Connection events: a lost connection (heartbeat timeout, exit) means down."""
        assert self._monitor is not None
        loop = asyncio.get_running_loop()
        while True:
            frames = await self._monitor.recv_multipart()
            try:
                parsed = parse_monitor_message(frames)
                event, value = parsed["event"], parsed["value"]
            except Exception:  # a malformed monitor frame is not worth dying for
                continue
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._refusal = None
                self._last_seen = loop.time()
                self.link_up = True
                log.info("engine link up at %s", self.endpoint)
                with contextlib.suppress(EngineUnavailable):
                    self.send(Ping(request_id=self.new_id("ping")))
            elif event & HANDSHAKE_FAILURES:
                self._refused(event, value)
            elif event == zmq.EVENT_DISCONNECTED:
                self.link_up = False
                if self.connected:
                    self.mark_down(
                        "engine connection lost (exited or stopped answering heartbeats)"
                    )
                else:
                    self.last_error = self._refusal or "engine connection lost"

    def _refused(self, event: int, value: int) -> None:
        """The engine refused the handshake: say why in /ready and try again later
        (libzmq does not reconnect after a refused key or a mechanism mismatch)."""
        reason = handshake_failure(event, value, self.endpoint, self._curve is not None)
        if reason is None:  # not about keys: the disconnect that follows is handled as ever
            return
        if reason != self._refusal:
            log.error("%s", reason)
        self._refusal = reason
        if self.connected:
            self.mark_down(reason)
        self.last_error = reason
        if event != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # that one zmq retries by itself
            asyncio.get_running_loop().call_later(REFUSED_RETRY_S, self._reconnect)

    def _reconnect(self) -> None:
        if self._sock is None or self._sock.closed:
            return
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disconnect(self.endpoint)
        self._sock.connect(self.endpoint)

    def mark_down(self, reason: str) -> None:
        """The engine is down (or restarted and forgot its requests): fail every open one."""
        log.warning(
            "%s (engine at %s); failing %d open requests", reason, self.endpoint, len(self._pending)
        )
        self.connected = False
        self.last_error = reason
        self.gate.open()
        for request_id in list(self._pending):
            with contextlib.suppress(EngineUnavailable):
                self.send(AbortRequest(request_id=request_id, reason="engine_down"))
        self._fail_all(reason)
        if self._on_down is not None:
            self._on_down(reason)

    def _fail_all(self, reason: str) -> None:
        for queue in self._pending.values():
            queue.put_nowait(EngineUnavailable(reason))
