"""The engine process's loop: a zmq ROUTER socket serving the infer protocol.

Invariants: one loop, one thread; new messages are taken without blocking
while requests are live (blocking up to `idle_poll_ms` when idle); each pass
runs at most one engine step and sends each delta to the identity that sent
the request. A bad frame is answered with RequestError(code="bad_frame"),
carrying the frame's request id when it could be read, and never ends the
loop; a peer speaking another protocol version is logged once (its frames
are answered like any bad frame, so it sees this engine's version); neither does a failing step (its requests get
RequestError(code="internal")). `stop()` (from a signal handler) ends the
loop: live requests get RequestError(code="shutting_down") and the ipc
socket file is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import zmq

from infer_protocol import (
    PROTOCOL_VERSION,
    AbortRequest,
    GenerateRequest,
    Message,
    MetricsQuery,
    ModelInfoQuery,
    Ping,
    Pong,
    ProtocolError,
    RequestError,
    decode,
    encode,
)
from infer_protocol.curve import ServerKeys, apply_server

from .engine import Engine, EngineError
from .frame_guard import BadFrameLimiter

log = logging.getLogger("infer_scheduler")
MAX_MESSAGES_PER_PASS = 256
# a frame past this is refused by libzmq (the sender is disconnected) before it is buffered
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
RCV_HWM = 10_000
SHUTDOWN_GRACE_S = 0.3
MAX_REMEMBERED_PEERS = 1024


def default_engine_id(endpoint: str) -> str:
    """A stable id for an engine without `--engine-id`: its host and a hash of its endpoint
    (the same engine restarted on the same host and endpoint keeps it)."""
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def ipc_path(endpoint: str) -> str | None:
    """The socket file of an ipc:// endpoint, else None."""
    return endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else None


class EngineServer:
    """Serves one Engine on one ROUTER socket."""

    def __init__(
        self,
        engine: Engine,
        endpoint: str,
        model_info: Callable[[str], Message],
        idle_poll_ms: int = 100,
        curve: ServerKeys | None = None,
        engine_id: str = "",
    ) -> None:
        self.engine = engine
        self.endpoint = endpoint
        self.engine_id = engine_id or default_engine_id(endpoint)
        self.epoch = uuid.uuid4().hex[:12]  # new on every start: a gateway sees the restart
        self.model_info = model_info
        self.idle_poll_ms = idle_poll_ms
        self._stopping = False
        self._owners: dict[str, list[bytes]] = {}
        self._ctx = zmq.Context()
        self.socket = self._ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 1000)
        # no high-water mark: a slow gateway must not lose a request's final delta
        self.socket.setsockopt(zmq.SNDHWM, 0)
        # incoming: a bounded queue per peer pushes back on a flooding sender (nothing is dropped)
        self.socket.setsockopt(zmq.RCVHWM, RCV_HWM)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self._bad_frames = BadFrameLimiter()
        self._other_versions: set[bytes] = set()  # peers already reported as mismatched
        # CurveZMQ: a ZAP thread on this context lets in only allowed gateway keys
        self._auth = apply_server(self.socket, curve) if curve is not None else None
        self._bind()

    def _bind(self) -> None:
        path = ipc_path(self.endpoint)
        if path is None:
            self.socket.bind(self.endpoint)
            return
        old = os.umask(0o177)  # the socket file is created owner-only (0600)
        try:
            self.socket.bind(self.endpoint)
        finally:
            os.umask(old)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)

    def stop(self, *_args: object) -> None:
        """Ask the loop to end after the current pass (safe in a signal handler)."""
        self._stopping = True

    # ------------------------------------------------------------ loop
    def serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        try:
            while not self._stopping:
                timeout = 0 if self.engine.has_work else self.idle_poll_ms
                try:
                    ready = poller.poll(timeout)
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.EINTR:
                        continue
                    raise
                if ready:
                    self._drain()
                if self.engine.has_work and not self._stopping:
                    self._step()
        finally:
            self._shutdown()

    def _drain(self) -> None:
        for _ in range(MAX_MESSAGES_PER_PASS):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle(frames)

    def _step(self) -> None:
        try:
            deltas = self.engine.step()
        except Exception:
            log.exception("engine step failed; failing its requests")
            for request_id in self.engine.abort_all():
                self._reply_to(
                    request_id, RequestError(request_id, "internal", "engine step failed")
                )
            return
        for delta in deltas:
            self._reply_to(delta.request_id, delta)

    # ------------------------------------------------------------ messages
    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            log.warning("dropping a message without a sender identity")
            return
        envelope, payload = frames[:-1], frames[-1]
        try:
            msg = decode(payload)
        except ProtocolError as exc:
            if exc.peer_version is not None:
                self._version_mismatch(envelope, exc.peer_version)
            self._bad_frame(envelope, str(exc), exc.request_id, quiet=exc.peer_version is not None)
            return
        try:
            self._dispatch(envelope, msg)
        except Exception as exc:  # a bug answering one message must not end the loop
            log.exception("failed to handle %s", type(msg).__name__)
            self._send(envelope, RequestError(getattr(msg, "request_id", ""), "internal", str(exc)))

    def _bad_frame(
        self, envelope: list[bytes], text: str, request_id: str = "", quiet: bool = False
    ) -> None:
        """Log and answer a bad frame, unless a flood of them is being rate limited.

        The answer carries `request_id` (when the frame's could be read), so
        the request it belongs to fails at once instead of timing out.
        """
        if not self._bad_frames.admit():
            return
        dropped = self._bad_frames.take_suppressed()
        more = f" ({dropped} more bad frames dropped unanswered)" if dropped else ""
        if not quiet or dropped:
            log.warning("bad frame from %r: %s%s", envelope[0], text, more)
        self._send(envelope, RequestError(request_id, "bad_frame", text))

    def _version_mismatch(self, envelope: list[bytes], version: int) -> None:
        """One log line per peer that speaks another protocol version."""
        peer = envelope[0]
        if peer in self._other_versions:
            return
        if len(self._other_versions) >= MAX_REMEMBERED_PEERS:
            self._other_versions.clear()
        self._other_versions.add(peer)
        log.error(
            "peer %r speaks protocol version %d, this engine %d: its messages are refused "
            "(run the gateway and the engine from the same release)",
            peer,
            version,
            PROTOCOL_VERSION,
        )

    def _dispatch(self, envelope: list[bytes], msg: Message) -> None:
        if isinstance(msg, GenerateRequest):
            try:
                self.engine.add_request(msg)
            except EngineError as exc:
                self._send(envelope, RequestError(msg.request_id, exc.code, exc.message))
                return
            self._owners[msg.request_id] = envelope
        elif isinstance(msg, AbortRequest):
            self.engine.abort(msg.request_id)
        elif isinstance(msg, Ping):
            self._send(envelope, self._pong(msg.request_id))
        elif isinstance(msg, ModelInfoQuery):
            self._send(envelope, self.model_info(msg.request_id))
        elif isinstance(msg, MetricsQuery):
            self._send(envelope, self.engine.metrics(msg.request_id))
        else:
            self._bad_frame(envelope, f"{type(msg).__name__} is not a request the engine accepts")

    def _pong(self, request_id: str) -> Pong:
        sched, pool = self.engine.scheduler, self.engine.pool
        return Pong(
            request_id,
            running=len(sched.running),
            waiting=len(sched.waiting),
            engine_id=self.engine_id,
            epoch=self.epoch,
            kv_use=min(1.0, pool.num_used / pool.num_blocks) if pool.num_blocks else 0.0,
        )

    def _reply_to(self, request_id: str, msg: Message) -> None:
        envelope = self._owners.get(request_id)
        if envelope is None:
            return
        if isinstance(msg, RequestError) or getattr(msg, "finished", False):
            del self._owners[request_id]
        self._send(envelope, msg)

    def _send(self, envelope: list[bytes], msg: Message) -> None:
        try:
            self.socket.send_multipart([*envelope, encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone or its queue full: drop this message
            log.warning("could not send %s: %s", type(msg).__name__, exc)

    # ------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        failed = self.engine.abort_all()
        for request_id in failed:
            self._reply_to(
                request_id, RequestError(request_id, "shutting_down", "engine shutting down")
            )
        if failed:
            # a gateway's DEALER (ZMQ_IMMEDIATE) drops what it has not read yet when the
            # connection closes: give it a moment to read these errors first
            time.sleep(SHUTDOWN_GRACE_S)
        self.socket.close(linger=1000)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()
        path = ipc_path(self.endpoint)
        if path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        log.info("engine stopped")
