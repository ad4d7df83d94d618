"""Scheduling policy (budget, chunking, preemption, cache reuse) driven without a model.

`advance` plays the model's part: it marks the fed tokens computed and
appends one new token to each request that reached its end.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infer_scheduler.block_pool import BlockPool
from infer_scheduler.cache_manager import CacheManager
from infer_scheduler.options import CPU_MAX_TOKENS, EngineOptions, num_kv_blocks
from infer_scheduler.request import Request, Status
from infer_scheduler.scheduler import Batch, Scheduler


def make(num_blocks: int, block_size: int = 4, cache: bool = True, **kw) -> Scheduler:
    pool = BlockPool(num_blocks, block_size)
    return Scheduler(CacheManager(pool, cache), kw.get("max_running", 8), kw.get("budget", 64))


def advance(sched: Scheduler, batch: Batch, max_out: int = 1000) -> list[Request]:
    done = []
    for req, n in batch.items:
        prefill = req.remaining > 1
        req.num_computed += n
        if prefill:
            sched.cache.cache_prefix(req)
        if req.num_computed == req.num_tokens:
            req.all_ids.append(7)
            if req.num_output >= max_out:
                sched.remove(req)
                done.append(req)
    return done


def leaked(sched: Scheduler) -> int:
    pool, cache = sched.cache.pool, sched.cache.cache
    held = sum(len(r.block_table) - r.num_cached_blocks for r in sched.running)
    cached = cache.total_size // pool.block_size if cache else 0
    return pool.num_used - cached - held


def test_long_prompt_is_chunked_around_decodes() -> None:
    sched = make(64, budget=8)
    short = Request("short", [1, 2, 3])
    sched.add(short)
    advance(sched, sched.schedule())  # short prefilled, now decoding
    long = Request("long", list(range(40)))
    sched.add(long)
    sizes = []
    for _ in range(6):
        batch = sched.schedule()
        assert batch.num_tokens <= 8
        assert (short, 1) in batch.items  # the decode runs every step
        sizes.append(dict((r.request_id, n) for r, n in batch.items).get("long", 0))
        advance(sched, batch)
    assert sizes == [7, 7, 7, 7, 7, 5]
    assert long.num_output == 1


def test_max_running_caps_admission() -> None:
    sched = make(64, max_running=2)
    reqs = [Request(str(i), [i, i, i]) for i in range(4)]
    for r in reqs:
        sched.add(r)
    batch = sched.schedule()
    assert [r.request_id for r, _ in batch.items] == ["0", "1"]
    assert len(sched.waiting) == 2


def test_preempts_newest_and_everyone_finishes_without_leaks() -> None:
    sched = make(6, block_size=4)  # 24 token slots
    reqs = [Request(str(i), [10 + i] * 5) for i in range(4)]
    for r in reqs:
        sched.add(r)
    finished: list[Request] = []
    preempted = 0
    for _ in range(200):
        if not sched.has_work:
            break
        batch = sched.schedule()
        preempted += batch.preempted
        assert sched.cache.pool.num_used <= 6
        finished += advance(sched, batch, max_out=8)
        assert leaked(sched) == 0
    assert sorted(r.request_id for r in finished) == ["0", "1", "2", "3"]
    assert preempted > 0
    assert all(r.num_output == 8 for r in finished)
    assert leaked(sched) == 0 and not sched.running


def test_too_big_alone_finishes_with_length() -> None:
    sched = make(2, block_size=4)  # 8 slots
    req = Request("big", [1] * 7)
    sched.add(req)
    for _ in range(10):
        batch = sched.schedule()
        if batch.finished:
            break
        advance(sched, batch)
    assert batch.finished == [req] and req.finish_reason == "length"
    assert req.status is Status.FINISHED and req.num_output == 2
    assert leaked(sched) == 0


def test_prompt_bigger_than_the_pool_is_chunked_then_ends() -> None:
    sched = make(4, block_size=4, budget=64)  # 16 slots, a 30-token prompt
    req = Request("x", [0] * 30)
    sched.add(req)
    batch = sched.schedule()
    assert batch.items == [(req, 16)]  # the chunk is cut to what the pool holds
    advance(sched, batch)
    assert sched.schedule().finished == [req] and req.finish_reason == "length"
    assert not sched.has_work and leaked(sched) == 0


def test_prefix_reuse_and_hit_counting() -> None:
    sched = make(32, block_size=4)
    first = Request("a", list(range(20)))
    sched.add(first)
    advance(sched, sched.schedule(), max_out=1)
    second = Request("b", list(range(20)) + [99, 98])
    sched.add(second)
    batch = sched.schedule()
    assert batch.items == [(second, 2)]  # 20 cached tokens, only the new ones fed
    assert sched.cache.hits == 20 and sched.cache.misses == 20 + 2
    assert second.cached_tokens == 20


def test_no_prefix_cache_computes_everything() -> None:
    sched = make(32, block_size=4, cache=False)
    first = Request("a", list(range(20)))
    sched.add(first)
    advance(sched, sched.schedule(), max_out=1)
    assert sched.cache.pool.num_free == 32
    second = Request("b", list(range(20)) + [99])
    sched.add(second)
    assert sched.schedule().items == [(second, 21)]


def test_options_and_kv_sizing() -> None:

    cpu = torch.device("cpu")
    assert num_kv_blocks(EngineOptions(kv_cache_tokens=100, block_size=16), 1000, cpu) == 7
    default = num_kv_blocks(EngineOptions(), 46080, cpu)  # SmolLM2-135M in float32
    assert 16 <= default <= CPU_MAX_TOKENS // 16
    assert num_kv_blocks(EngineOptions(), 1 << 40, cpu) == 16  # never below the minimum
    assert EngineOptions().batch_tokens_for(cpu) == 512
    assert EngineOptions(max_batch_tokens=7).batch_tokens_for(torch.device("cuda")) == 7
    for bad in ({"max_running": 0}, {"kv_cache_tokens": 0}, {"gpu_memory_utilization": 1.5}):
        with pytest.raises(ValueError):
            EngineOptions(**bad)


@settings(max_examples=int(os.environ.get("SCHEDULER_EXAMPLES", "100")), deadline=None)
@given(
    lens=st.lists(st.integers(1, 30), min_size=1, max_size=12),
    outs=st.integers(1, 12),
    num_blocks=st.integers(4, 40),
    budget=st.integers(1, 64),
    max_running=st.integers(1, 6),
    cache=st.booleans(),
    alphabet=st.integers(1, 3),
)
def test_random_workloads_finish_without_leaks(
    lens, outs, num_blocks, budget, max_running, cache, alphabet
) -> None:
    bs = 4
    sched = make(num_blocks, bs, cache, max_running=max_running, budget=budget)
    # a small alphabet makes prompts share prefixes, exercising the cache
    reqs = [Request(str(i), [(i * j) % alphabet for j in range(n)]) for i, n in enumerate(lens)]
    for r in reqs:
        sched.add(r)
    done: list[Request] = []
    for _ in range(5000):
        if not sched.has_work:
            break
        batch = sched.schedule()
        done += batch.finished
        assert batch.num_tokens <= budget and len(sched.running) <= max_running
        done += advance(sched, batch, max_out=outs)
        assert leaked(sched) == 0
    assert not sched.has_work, "a request got stuck"
    assert sorted(r.request_id for r in done) == sorted(r.request_id for r in reqs)
    for r in done:  # those too big for the whole pool end early with "length"
        assert r.num_output == outs or (
            r.finish_reason == "length" and r.num_tokens > (num_blocks - 1) * bs
        )
    if sched.cache.cache:
        assert sched.cache.cache.protected_size == 0
        sched.cache.cache.evict(10**6)
    assert sched.cache.pool.num_free == num_blocks
