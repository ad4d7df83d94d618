"""Metrics over an engine pool: each engine's EngineMetrics, their total, the per-engine list.

Invariants: the total of several engines has the seed's shape (one `engine`
and one `cache` object): counts are summed, averages are weighted by each
engine's completed requests, the hit rate is recomputed from summed hits and
misses. An engine that does not answer counts as zeros in the total and as
`metrics: null` nowhere else: its list entry keeps the gateway's own figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from infer_protocol import CacheStats, EngineMetrics, EngineStats, KvStats, MetricsQuery

from .engine_client import EngineUnavailable
from .engine_pool import EnginePool, PooledEngine

_AVERAGES = ("avg_queue_time_ms", "avg_prefill_time_ms", "avg_decode_time_ms")


async def engine_metrics(engine: PooledEngine, timeout: float = 2.0) -> EngineMetrics | None:
    """The engine's MetricsQuery answer, or None when it is not connected or silent."""
    client = engine.client
    if not client.connected:
        return None
    try:
        answer = await client.query(MetricsQuery(request_id=client.new_id("metrics")), timeout)
    except EngineUnavailable:
        return None
    return answer if isinstance(answer, EngineMetrics) else None


async def query_all(pool: EnginePool) -> list[EngineMetrics | None]:
    """Every engine's metrics, in pool order, asked at once."""
    return list(await asyncio.gather(*(engine_metrics(e) for e in pool.engines)))


def _sum_ints(objs: Sequence[Any], cls: type) -> dict[str, Any]:
    fields = cls.__attrs_attrs__
    return {f.name: sum(getattr(o, f.name) for o in objs) for f in fields if f.type in (int, "int")}


def combine(answers: Sequence[EngineMetrics | None]) -> EngineMetrics | None:
    """The pool's total (None when no engine answered; one answer is returned as is)."""
    got = [m for m in answers if m is not None]
    if len(got) <= 1:
        return got[0] if got else None
    engines = [m.engine for m in got]
    engine = _sum_ints(engines, EngineStats)
    done = engine["completed_requests"]
    for name in _AVERAGES:
        weighted = sum(getattr(e, name) * e.completed_requests for e in engines)
        engine[name] = weighted / done if done else 0.0
    cache = _sum_ints([m.cache for m in got], CacheStats)
    looked = cache["hits"] + cache["misses"]
    cache["hit_rate"] = cache["hits"] / looked if looked else 0.0
    kv = _sum_ints([m.kv for m in got], KvStats)
    kv["block_size"] = max(m.kv.block_size for m in got)
    return EngineMetrics(
        request_id="total",
        engine=EngineStats(**engine),
        cache=CacheStats(**cache),
        kv=KvStats(**kv),
    )


def engines_json(pool: EnginePool, answers: Sequence[EngineMetrics | None]) -> list[dict]:
    """The `engines` list of /v1/metrics: identity, state, load and routing counts."""
    out = []
    for engine, m in zip(pool.engines, answers, strict=True):
        out.append(
            {
                "id": engine.engine_id,
                "endpoint": engine.endpoint,
                "state": engine.state,
                "epoch": engine.epoch or None,
                "models": list(engine.names),
                "in_flight": engine.client.in_flight,
                "waiting": engine.waiting,
                "running": engine.running,
                "kv_use": round(engine.kv_use, 4),
                "requests_routed": engine.routed,
                "requests_failed_over": engine.failed_over,
                "completed_requests": m.engine.completed_requests if m else None,
                "prefix_cache_hit_rate": round(m.cache.hit_rate, 4) if m else None,
                "detail": None if engine.ready else engine.problem,
            }
        )
    return out


class PoolCollector(Collector):
    """Per-engine series labelled by `engine` (its id), read from the pool at scrape time."""

    def __init__(self, pool: EnginePool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Any]:
        gauges = {
            "ready": GaugeMetricFamily(
                "infer_engine_ready", "1 when the engine takes requests", labels=["engine"]
            ),
            "in_flight": GaugeMetricFamily(
                "infer_engine_in_flight", "Requests the gateway has open on it", labels=["engine"]
            ),
            "waiting": GaugeMetricFamily(
                "infer_engine_requests_waiting", "Waiting, from its last Pong", labels=["engine"]
            ),
            "running": GaugeMetricFamily(
                "infer_engine_requests_running", "Running, from its last Pong", labels=["engine"]
            ),
            "kv_use": GaugeMetricFamily(
                "infer_engine_kv_cache_usage_ratio", "KV blocks in use", labels=["engine"]
            ),
        }
        routed = CounterMetricFamily(
            "infer_engine_routed_requests", "Requests routed to the engine", labels=["engine"]
        )
        moved = CounterMetricFamily(
            "infer_engine_failed_over_requests",
            "Requests resubmitted elsewhere after the engine was lost before streaming",
            labels=["engine"],
        )
        for e in self._pool.engines:
            label = [e.engine_id]
            gauges["ready"].add_metric(label, 1.0 if e.ready else 0.0)
            gauges["in_flight"].add_metric(label, e.client.in_flight)
            gauges["waiting"].add_metric(label, e.waiting)
            gauges["running"].add_metric(label, e.running)
            gauges["kv_use"].add_metric(label, e.kv_use)
            routed.add_metric(label, e.routed)
            moved.add_metric(label, e.failed_over)
        yield from gauges.values()
        yield routed
        yield moved
