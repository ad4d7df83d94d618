"""Stats of a level on synthetic timings: percentiles, throughput, failures."""

from __future__ import annotations

import pytest

from infer.bench.sse import RequestResult
from infer.bench.stats import latency_ms, summarize, tpot


def test_latency_percentiles_in_ms() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    out = latency_ms(values)
    assert out["mean"] == pytest.approx(50.5)
    assert out["p50"] == pytest.approx(50.5)
    assert out["p90"] == pytest.approx(90.1)
    assert out["p99"] == pytest.approx(99.01)


def test_latency_of_nothing_is_none() -> None:
    assert latency_ms([]) == {"mean": None, "p50": None, "p90": None, "p99": None}


def test_tpot_needs_two_tokens() -> None:
    assert tpot(RequestResult(ok=True, ttft=0.1, e2e=1.1, output_tokens=11)) == pytest.approx(0.1)
    assert tpot(RequestResult(ok=True, ttft=0.1, e2e=0.1, output_tokens=1)) is None


def test_summary_counts_only_successes_and_groups_errors() -> None:
    good = [
        RequestResult(
            ok=True,
            ttft=0.05,
            itl=[0.01, 0.02],
            e2e=0.08,
            output_tokens=3,
            prompt_tokens=7,
            completion_tokens=3,
        )
        for _ in range(4)
    ]
    bad = [RequestResult(ok=False, error="HTTP 503: busy", e2e=0.01) for _ in range(2)]
    bad.append(RequestResult(ok=False, error="stream error: boom"))
    s = summarize(8, good + bad, duration_s=2.0, token_source="test")
    assert (s.concurrency, s.requests, s.completed, s.failed) == (8, 7, 4, 3)
    assert s.errors == {"HTTP 503: busy": 2, "stream error: boom": 1}
    assert s.output_tokens == 12
    assert s.output_tokens_per_s == pytest.approx(6.0)
    assert s.requests_per_s == pytest.approx(2.0)
    assert s.ttft_ms["p50"] == pytest.approx(50.0)
    assert s.itl_ms["p50"] == pytest.approx(15.0)
    assert s.e2e_ms["p99"] == pytest.approx(80.0)
    assert s.tpot_ms["p50"] == pytest.approx(15.0)
    assert (s.server_prompt_tokens, s.server_completion_tokens) == (28, 12)
    assert s.to_dict()["errors"] == s.errors


def test_summary_of_all_failures_has_no_latencies() -> None:
    s = summarize(1, [RequestResult(ok=False, error="x")], 0.5, "test")
    assert s.completed == 0 and s.output_tokens_per_s == 0.0
    assert s.ttft_ms["p50"] is None and s.server_completion_tokens is None
