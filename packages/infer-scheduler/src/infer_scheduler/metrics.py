"""Engine counters and per-request figures (the seed's `engine` and `performance` objects).

Definitions (all in milliseconds, monotonic clock):
- queue: arrival to first scheduled step;
- prefill: first scheduled step to first generated token;
- decode: first generated token to finish;
- tokens_per_second: completion tokens / (prefill + decode);
- batch_size: mean number of requests in the steps the request took part in.
Averages in EngineStats are over completed requests (finish reason stop or
length). Refused requests count as failed; client aborts as neither.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from infer_protocol import EngineStats, RequestTiming, Usage

from .request import Request


def request_usage(req: Request) -> Usage:
    return Usage(
        prompt_tokens=req.num_prompt,
        completion_tokens=req.num_output,
        cached_tokens=req.cached_tokens,
    )


def request_timing(req: Request, now: float | None = None) -> RequestTiming:
    """Figures of a request that is finishing now."""
    now = time.monotonic() if now is None else now
    started = req.first_scheduled if req.first_scheduled is not None else now
    first = req.first_token if req.first_token is not None else now
    queue_ms = max(0.0, started - req.arrival) * 1000
    prefill_ms = max(0.0, first - started) * 1000
    decode_ms = max(0.0, now - first) * 1000
    busy_s = (prefill_ms + decode_ms) / 1000
    return RequestTiming(
        queue_ms=queue_ms,
        prefill_ms=prefill_ms,
        decode_ms=decode_ms,
        tokens_per_second=req.num_output / busy_s if busy_s > 0 else 0.0,
        batch_size=round(req.batch_size_sum / req.steps) if req.steps else 0,
    )


@dataclass
class EngineCounters:
    """Running totals since the engine started."""

    total_requests: int = 0
    completed_requests: int = 0
    failed_requests: int = 0
    total_tokens_generated: int = 0
    queue_ms_sum: float = 0.0
    prefill_ms_sum: float = 0.0
    decode_ms_sum: float = 0.0

    def record_finish(self, reason: str, timing: RequestTiming) -> None:
        if reason in ("stop", "length"):
            self.completed_requests += 1
            self.queue_ms_sum += timing.queue_ms
            self.prefill_ms_sum += timing.prefill_ms
            self.decode_ms_sum += timing.decode_ms

    def stats(self, queue_size: int, queue_capacity: int, running: int) -> EngineStats:
        done = self.completed_requests
        return EngineStats(
            total_requests=self.total_requests,
            completed_requests=done,
            failed_requests=self.failed_requests,
            total_tokens_generated=self.total_tokens_generated,
            avg_queue_time_ms=self.queue_ms_sum / done if done else 0.0,
            avg_prefill_time_ms=self.prefill_ms_sum / done if done else 0.0,
            avg_decode_time_ms=self.decode_ms_sum / done if done else 0.0,
            queue_size=queue_size,
            queue_capacity=queue_capacity,
            concurrent_requests=running,
        )
