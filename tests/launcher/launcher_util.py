"""Helpers of the launcher tests (a uniquely named module: every test folder has a conftest)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def script(name: str) -> str:
    """Path of a console script installed in this environment."""
    path = BIN / name
    assert path.is_file(), f"console script {name} is not installed next to {sys.executable}"
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a console script to completion, capturing its output."""
    return subprocess.run(
        [script(argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
