"""Helpers shared by the scheduler tests (imported by name; conftest holds only fixtures)."""

from __future__ import annotations

import random

from infer_protocol import GenerateRequest, SamplingParams, TokenDelta

GREEDY = SamplingParams(temperature=0.0)


def gen(request_id: str, ids: list[int], max_tokens: int = 8, **kw) -> GenerateRequest:
    """A greedy request that ignores eos unless told otherwise."""
    kw.setdefault("ignore_eos", True)
    kw.setdefault("sampling", GREEDY)
    return GenerateRequest(request_id, ids, max_tokens=max_tokens, **kw)


def run_all(engine, max_steps: int = 10_000) -> dict[str, list[TokenDelta]]:
    """Step the engine until idle; every delta grouped by request id."""
    seen: dict[str, list[TokenDelta]] = {}
    for _ in range(max_steps):
        if not engine.has_work:
            return seen
        for delta in engine.step():
            seen.setdefault(delta.request_id, []).append(delta)
    raise AssertionError("engine did not go idle")


def tokens_of(deltas: list[TokenDelta]) -> list[int]:
    assert [d.finished for d in deltas].count(True) == 1 and deltas[-1].finished
    return [t for d in deltas for t in d.token_ids]


def prompts(n: int, base_len: int = 12, seed: int = 0) -> list[list[int]]:
    """n different token-id prompts of varied lengths."""
    rng = random.Random(seed)
    return [[rng.randrange(100, 40000) for _ in range(base_len + 3 * i)] for i in range(n)]
