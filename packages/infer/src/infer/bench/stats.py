"""Summaries of one concurrency level: latency percentiles and throughput.

Latencies are reported in milliseconds as {"mean", "p50", "p90", "p99"}
(numpy's linear percentiles; all None when there are no samples).
Throughput counts only successful requests over the level's wall time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import attrs
import numpy as np

from infer.bench.sse import RequestResult

PERCENTILES = (50, 90, 99)


def latency_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """Mean and p50/p90/p99 of `seconds`, in ms, rounded to 0.001 ms."""
    if len(seconds) == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    values = np.asarray(seconds, dtype=float) * 1000.0
    out = {"mean": round(float(values.mean()), 3)}
    for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True):
        out[f"p{p}"] = round(float(v), 3)
    return out


def tpot(result: RequestResult) -> float | None:
    """Time per output token after the first, in seconds (None below 2 tokens)."""
    if result.ttft is None or result.output_tokens < 2:
        return None
    return (result.e2e - result.ttft) / (result.output_tokens - 1)


def _sum_or_none(values: list[int | None]) -> int | None:
    return sum(values) if values and all(isinstance(v, int) for v in values) else None


@attrs.frozen
class LevelSummary:
    """The measured numbers of one concurrency level (what the JSON holds)."""

    concurrency: int
    requests: int
    completed: int
    failed: int
    errors: dict[str, int]
    duration_s: float
    output_tokens: int
    output_tokens_per_s: float
    requests_per_s: float
    ttft_ms: dict[str, float | None]
    itl_ms: dict[str, float | None]
    e2e_ms: dict[str, float | None]
    tpot_ms: dict[str, float | None]
    token_count_source: str
    server_prompt_tokens: int | None
    server_completion_tokens: int | None
    server_cached_tokens: int | None = None  # sum of usage cached_tokens, when all report it
    prefix_cache: dict | None = None  # {"hits", "queries", "hit_rate"} from GET /v1/metrics

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return attrs.asdict(self)


def summarize(
    concurrency: int,
    results: list[RequestResult],
    duration_s: float,
    token_source: str,
    prefix_cache: dict | None = None,
) -> LevelSummary:
    """Summarize `results` (output_tokens already counted) of a level that took `duration_s`."""
    done = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    tokens = sum(r.output_tokens for r in done)
    wall = max(duration_s, 1e-9)
    return LevelSummary(
        concurrency=concurrency,
        requests=len(results),
        completed=len(done),
        failed=len(failed),
        errors=dict(Counter(r.error or "unknown error" for r in failed).most_common()),
        duration_s=round(duration_s, 4),
        output_tokens=tokens,
        output_tokens_per_s=round(tokens / wall, 3),
        requests_per_s=round(len(done) / wall, 4),
        ttft_ms=latency_ms([r.ttft for r in done if r.ttft is not None]),
        itl_ms=latency_ms([gap for r in done for gap in r.itl]),
        e2e_ms=latency_ms([r.e2e for r in done]),
        tpot_ms=latency_ms([t for r in done if (t := tpot(r)) is not None]),
        token_count_source=token_source,
        server_prompt_tokens=_sum_or_none([r.prompt_tokens for r in done]),
        server_completion_tokens=_sum_or_none([r.completion_tokens for r in done]),
        server_cached_tokens=_sum_or_none([r.cached_tokens for r in done]),
        prefix_cache=prefix_cache,
    )
