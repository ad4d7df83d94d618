"""Process helpers for the reliability tests: reuse tests/server/server_procs.py.

Engines run with OMP_WAIT_POLICY=PASSIVE (the CPU is shared) and a small
tiny-Llama configuration so worst-day scenarios stay fast.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from server_procs import Engine, Gateway, Proc, free_port

__all__ = ["Engine", "Gateway", "Proc", "free_port", "metrics", "pending", "wait_until"]


def metrics(gw: Gateway) -> dict:
    """The gateway's /v1/metrics JSON."""
    return httpx.get(gw.url + "/v1/metrics", timeout=10).json()


def pending(gw: Gateway) -> float:
    """Requests the gateway still waits on the engine for (its Prometheus gauge)."""
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("infer_gateway_pending_requests "):
            return float(line.split()[1])
    raise AssertionError("no infer_gateway_pending_requests in /metrics")


def wait_until(check, timeout: float, interval: float = 0.1):
    """Poll `check()` until it returns a truthy value; return it (or the last value)."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value
