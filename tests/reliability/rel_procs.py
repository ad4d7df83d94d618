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

__all__ = [
    "Engine",
    "Gateway",
    "Proc",
    "free_port",
    "metrics",
    "pending",
    "prometheus",
    "wait_until",
]


def metrics(gw: Gateway) -> dict:
    """The gateway's /v1/metrics JSON."""
    return httpx.get(gw.url + "/v1/metrics", timeout=10).json()


def prometheus(gw: Gateway) -> dict[str, float]:
    """The gateway's /metrics samples by their full text name, e.g. 'x_total{by="engine"}'."""
    out = {}
    for line in httpx.get(gw.url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def pending(gw: Gateway) -> float:
    """Requests the gateway still waits on the engine for (its Prometheus gauge)."""
    samples = prometheus(gw)
    assert "infer_gateway_pending_requests" in samples, "no infer_gateway_pending_requests"
    return samples["infer_gateway_pending_requests"]


def wait_until(check, timeout: float, interval: float = 0.1):
    """Poll `check()` until it returns a truthy value; return it (or the last value)."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value
