"""Start a real `infer-scheduler` process and talk to it over a DEALER socket."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import zmq

from infer_protocol import Message, decode, encode


class EngineProcess:
    """A running engine process; its stderr lines are collected in `lines`."""

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, timeout: float = 180
    ) -> None:
        cmd = [sys.executable, "-m", "infer_scheduler.cli", *args]
        self.proc = subprocess.Popen(
            cmd,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})},
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError("engine not ready:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "engine ready" in line:
                self._ready.set()

    def stop(self, sig: int = 15, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Client:
    """One gateway-like DEALER connection."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def send(self, msg: Message) -> None:
        self.sock.send(encode(msg))

    def send_raw(self, frame: bytes) -> None:
        self.sock.send(frame)

    def recv(self, timeout: float = 60) -> Message:
        if not self.sock.poll(int(timeout * 1000)):
            raise AssertionError("no answer from the engine")
        return decode(self.sock.recv())

    def ask(self, msg: Message, timeout: float = 60) -> Message:
        self.send(msg)
        return self.recv(timeout)

    def collect(self, ids: set[str], timeout: float = 120) -> dict[str, list[Message]]:
        """Receive until every id in `ids` got its final message (delta or error)."""
        out: dict[str, list[Message]] = {}
        open_ids = set(ids)
        deadline = time.monotonic() + timeout
        while open_ids:
            msg = self.recv(max(0.1, deadline - time.monotonic()))
            out.setdefault(msg.request_id, []).append(msg)
            if getattr(msg, "finished", True):
                open_ids.discard(msg.request_id)
        return out

    def close(self) -> None:
        self.sock.close()
