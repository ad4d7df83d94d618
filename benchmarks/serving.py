"""`infer serve` for a benchmark script: started on a free port, ready, stopped after."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(
    serve_args: list[str], log_path: Path, ready_s: float
) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, the `infer serve` process) once /ready is 200; SIGTERM (then kill) after.
    Exits the script naming the log when the server dies or is not ready in `ready_s`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [BIN / "infer", "serve", "--port", str(port), *serve_args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + ready_s
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"infer serve exited ({server.returncode}); see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/ready", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"infer serve not ready in {ready_s:g} s; see {log_path}")
                time.sleep(0.5)
            yield url, server
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
