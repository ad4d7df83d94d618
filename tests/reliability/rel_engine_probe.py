"""Talk to an engine's ROUTER directly: metrics queries and raw frames (a helper, not tests)."""

from __future__ import annotations

import itertools

import zmq

from infer_protocol import EngineMetrics, MetricsQuery, decode, encode


class EngineProbe:
    """A private DEALER connected to the engine; answers are matched by request id."""

    def __init__(self, endpoint: str) -> None:
        self._ctx = zmq.Context()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self._ids = itertools.count()

    def send_raw(self, payload: bytes) -> None:
        self.sock.send(payload)

    def recv(self, timeout_ms: int = 5000):
        if not self.sock.poll(timeout_ms):
            raise TimeoutError("the engine did not answer")
        return decode(self.sock.recv())

    def metrics(self, timeout_ms: int = 5000) -> EngineMetrics:
        rid = f"probe-{next(self._ids)}"
        self.sock.send(encode(MetricsQuery(request_id=rid)))
        while True:
            msg = self.recv(timeout_ms)
            if isinstance(msg, EngineMetrics) and msg.request_id == rid:
                return msg

    def close(self) -> None:
        self.sock.close(0)
        self._ctx.term()
