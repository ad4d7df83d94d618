"""Metrics: the seed's /v1/metrics JSON and Prometheus text for /metrics.

Each app owns one `GatewayMetrics` with its own CollectorRegistry (never the
global one), so several apps in one process never share counters.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import attrs
import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from infer_protocol import EngineMetrics

_GB = 1024**3
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5)


class GpuProbe:
    """NVML readings of GPU 0, or None when there is no NVIDIA GPU/driver."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._tried = False

    def read(self) -> dict | None:
        try:
            import pynvml
        except ImportError:
            return None
        if not self._tried:
            self._tried = True
            with contextlib.suppress(Exception):
                pynvml.nvmlInit()
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        if self._handle is None:
            return None
        try:
            util = pynvml.nvmlDeviceGetUtilizationRates(self._handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
            temp = pynvml.nvmlDeviceGetTemperature(self._handle, pynvml.NVML_TEMPERATURE_GPU)
        except Exception:
            return None
        return {
            "utilization_percent": float(util.gpu),
            "memory_used_gb": round(mem.used / _GB, 3),
            "memory_total_gb": round(mem.total / _GB, 3),
            "temperature_c": int(temp),
        }


def system_metrics(gpu: GpuProbe) -> dict:
    """The seed's cpu, memory and gpu objects."""
    mem = psutil.virtual_memory()
    return {
        "cpu": {
            "utilization_percent": float(psutil.cpu_percent(interval=None)),
            "core_count": psutil.cpu_count() or 1,
        },
        "memory": {
            "used_gb": round(mem.used / _GB, 3),
            "total_gb": round(mem.total / _GB, 3),
            "utilization_percent": float(mem.percent),
        },
        "gpu": gpu.read(),
    }


def engine_json(metrics: EngineMetrics | None) -> tuple[dict, dict]:
    """The seed's engine and cache objects (zeros when the engine is unreachable)."""
    metrics = metrics or EngineMetrics(request_id="none")
    engine = {k: getattr(metrics.engine, k) for k in _fields(metrics.engine)}
    cache = {k: getattr(metrics.cache, k) for k in _fields(metrics.cache)}
    return engine, cache


def _fields(obj: Any) -> list[str]:
    return [f.name for f in attrs.fields(type(obj))]


class EngineCollector(Collector):
    """Gauges and counters read from the latest EngineMetrics at scrape time."""

    def __init__(self) -> None:
        self.latest: EngineMetrics | None = None

    def collect(self) -> Iterator[Any]:
        m = self.latest
        kv = m.kv if m else None
        cache = m.cache if m else None
        running = GaugeMetricFamily("infer_num_requests_running", "Requests running in the engine")
        running.add_metric([], kv.running_requests if kv else 0)
        waiting = GaugeMetricFamily("infer_num_requests_waiting", "Requests waiting in the engine")
        waiting.add_metric([], kv.waiting_requests if kv else 0)
        usage = GaugeMetricFamily(
            "infer_kv_cache_usage_ratio", "Fraction of KV cache blocks in use"
        )
        usage.add_metric([], kv.used_blocks / kv.total_blocks if kv and kv.total_blocks else 0.0)
        hits = CounterMetricFamily(
            "infer_prefix_cache_hits", "Prompt tokens found in the prefix cache"
        )
        hits.add_metric([], cache.hits if cache else 0)
        queries = CounterMetricFamily(
            "infer_prefix_cache_queries", "Prompt tokens looked up in the prefix cache"
        )
        queries.add_metric([], (cache.hits + cache.misses) if cache else 0)
        yield from (running, waiting, usage, hits, queries)


class GatewayMetrics:
    """Prometheus metrics of one gateway app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "infer_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.ttft = Histogram(
            "infer_time_to_first_token_seconds",
            "Time to first token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "infer_inter_token_latency_seconds",
            "Time between tokens",
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "infer_e2e_request_latency_seconds",
            "End-to-end generation latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("infer_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter("infer_generation_tokens", "Tokens generated", registry=r)
        self.pending = Gauge(
            "infer_gateway_pending_requests",
            "Requests the gateway is waiting on the engine for (set at scrape time)",
            registry=r,
        )
        self.engine = EngineCollector()
        r.register(self.engine)
        self.gpu = GpuProbe()
        psutil.cpu_percent(interval=None)  # prime: the first reading is meaningless

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """Latency observations of one generation request (all its choices)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics
        self._start = time.monotonic()
        self.ttft: float | None = None

    def first_token(self, seconds: float) -> None:
        if self.ttft is None:
            self.ttft = seconds
            self._m.ttft.observe(seconds)

    def inter_token(self, seconds: float) -> None:
        self._m.itl.observe(seconds)

    def finish(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Called once per request, however it ended; a request the engine never processed
        (refused, aborted while queued) adds no latency observation."""
        if prompt_tokens or completion_tokens:
            self._m.e2e.observe(time.monotonic() - self._start)
        self._m.prompt_tokens.inc(prompt_tokens)
        self._m.generation_tokens.inc(completion_tokens)
