"""Real gateway and engine processes for the server tests (a helper module, not tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai

# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


class Proc:
    """A child process whose combined output is collected by a thread."""

    def __init__(self, argv: list[str], name: str) -> None:
        self.argv = argv
        self.name = name
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end and for its output to be read."""
        code = self.popen.wait(timeout)
        self._reader.join(5)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.output}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not log {text!r} in {timeout}s:\n{self.output}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


class Engine(Proc):
    """A real infer-scheduler serving `model` on an ipc endpoint."""

    def __init__(self, model: str, endpoint: str, *extra: str) -> None:
        self.model = model
        self.endpoint = endpoint
        self.extra = extra
        argv = [
            _bin("infer-scheduler"),
            "--model",
            model,
            "--endpoint",
            endpoint,
            "--device",
            "cpu",
        ]
        argv += ["--dtype", "float32", *extra]
        super().__init__(argv, "engine")

    def wait_ready(self, timeout: float = 120) -> Engine:
        self.wait_for_line("engine ready", timeout)
        return self

    def restart(self) -> Engine:
        self.stop()
        return Engine(self.model, self.endpoint, *self.extra)


class Gateway(Proc):
    """A real infer-server on a free port."""

    def __init__(self, endpoint: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [_bin("infer-server"), "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--engine-endpoint", endpoint, *extra]
        super().__init__(argv, "gateway")

    def wait_up(self, timeout: float = 30) -> Gateway:
        self._poll("/health", timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> Gateway:
        self._poll("/ready", timeout)
        return self

    def _poll(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.output}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"gateway {path} not 200 within {timeout}s:\n{self.output}")

    def openai(self, api_key: str = "none", **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, **kw)


# ---------------------------------------------------------------- readings


def prom_value(gw: Gateway, name: str) -> float:
    """The value of an unlabelled series in the gateway's /metrics (0 when absent)."""
    for line in httpx.get(gw.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def token_counters(gw: Gateway) -> tuple[int, int]:
    """(infer_prompt_tokens_total, infer_generation_tokens_total)."""
    return (
        int(prom_value(gw, "infer_prompt_tokens_total")),
        int(prom_value(gw, "infer_generation_tokens_total")),
    )
