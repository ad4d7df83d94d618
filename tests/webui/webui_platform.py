"""Helpers of the web UI tests: start real gateway processes, watch browser pages."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BIN = Path(sys.executable).parent
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "webui"
API_KEY = "webui-test-key"
# true once the chat page has listed the models and picked one
MODEL_READY = "() => { const s = document.getElementById('model'); return !s.disabled && s.value; }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class ProcessExited(RuntimeError):
    """The process being waited for ended before it answered."""


def wait_http(
    proc: subprocess.Popen,
    url: str,
    log: Path,
    timeout: float,
    needs: tuple[subprocess.Popen, Path] | None = None,
) -> None:
    """Waits for `url` to answer 200; fails at once if `proc` (or the process in `needs`) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProcessExited(f"{url}: process exited with {proc.returncode}\n{log_tail(log)}")
        if needs is not None and needs[0].poll() is not None:
            stop_process(proc)
            raise RuntimeError(
                f"{url}: needed process exited with {needs[0].returncode}\n{log_tail(needs[1])}"
            )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_process(proc)
    other = f"\nneeded process log:\n{log_tail(needs[1])}" if needs else ""
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s\n{log_tail(log)}{other}")


class Gateway:
    """A running `infer-server` child process (see `start_gateway`)."""

    def __init__(self, workdir: Path, name: str, endpoint: str, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"
        cmd = [
            str(BIN / "infer-server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--engine-endpoint",
            endpoint,
            *flags,
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def wait(
        self, path: str, timeout: float, needs: tuple[subprocess.Popen, Path] | None = None
    ) -> Gateway:
        wait_http(self.proc, self.url + path, self.log, timeout, needs)
        return self

    def stop(self) -> None:
        stop_process(self.proc)


def start_gateway(
    workdir: Path,
    name: str,
    endpoint: str,
    *flags: str,
    wait_for: str,
    timeout: float,
    needs: tuple[subprocess.Popen, Path] | None = None,
) -> Gateway:
    """Starts a gateway and waits until `wait_for` answers 200. A gateway that
    exits at once (its free port taken meanwhile by another test run) is
    started again on another port, up to three times."""
    for attempt in range(3):
        gw = Gateway(workdir, f"{name}-{attempt}", endpoint, *flags)
        try:
            return gw.wait(wait_for, timeout, needs)
        except ProcessExited:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class Watched:
    """A page plus what it did: every URL it requested and every script error."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.urls: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on(
            "console",
            lambda m: (
                self.errors.append(m.text)
                if m.type == "error" and "Failed to load resource" not in m.text
                else None
            ),
        )

    def foreign_urls(self, base: str) -> list[str]:
        return [u for u in self.urls if not (u.startswith(base + "/") or u.startswith("data:"))]


def wait_engine_idle(base: str, timeout: float = 15) -> dict:
    """Waits until the engine behind `base` runs and queues nothing; returns its stats."""
    deadline = time.monotonic() + timeout
    while True:
        engine = httpx.get(base + "/v1/metrics").json()["engine"]
        if engine["concurrent_requests"] == 0 and engine["queue_size"] == 0:
            return engine
        if time.monotonic() > deadline:
            raise AssertionError(f"engine still busy: {engine}")
        time.sleep(0.2)


def open_raw_stream(base: str, max_tokens: int) -> socket.socket:
    """Starts a streamed chat completion on a bare socket; closing it disconnects."""
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps(
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "keep busy"}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
        }
    ).encode()
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def wait_for_content(sock: socket.socket) -> None:
    """Reads a raw stream until its first non-empty content delta (the request runs)."""
    seen = b""
    while not re.search(rb'"content":\s*"[^"]', seen):
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"stream closed before any content: {seen[-500:]!r}")
        seen += data
