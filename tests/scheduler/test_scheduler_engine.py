"""The engine core on a real (tiny, random-weight) Llama in float32."""

from __future__ import annotations

import dataclasses

import pytest
from scheduler_helpers import gen, prompts, run_all, tokens_of

from infer_protocol import SamplingParams
from infer_scheduler.engine import Engine, EngineError
from infer_scheduler.options import EngineOptions


def engine(bundle, **kw) -> Engine:
    kw.setdefault("kv_cache_tokens", 8192)
    return Engine(bundle, EngineOptions(**kw))


def alone(bundle, ids: list[int], max_tokens: int) -> list[int]:
    eng = engine(bundle, enable_prefix_cache=False)
    eng.add_request(gen("solo", ids, max_tokens))
    return tokens_of(run_all(eng)["solo"])


def test_batch_equals_one_at_a_time_with_chunked_prefill(tiny_bundle) -> None:
    ps = prompts(16, base_len=16)
    # a small token budget chunks the longer prompts while others decode
    eng = engine(tiny_bundle, max_batch_tokens=64)
    for i, p in enumerate(ps):
        eng.add_request(gen(f"r{i}", p, max_tokens=8))
    together = run_all(eng)
    single = engine(tiny_bundle, enable_prefix_cache=False)
    for i, p in enumerate(ps):
        single.add_request(gen(f"r{i}", p, max_tokens=8))
        assert tokens_of(run_all(single)[f"r{i}"]) == tokens_of(together[f"r{i}"])
    final = together["r15"][-1]
    assert final.usage.prompt_tokens == len(ps[15]) and final.usage.completion_tokens == 8
    assert final.timing.batch_size > 1 and final.timing.tokens_per_second > 0
    assert eng.leaked_blocks() == 0


def test_prefix_cache_computes_only_new_tokens(tiny_bundle) -> None:
    shared = prompts(1, base_len=200, seed=1)[0]
    first, second = shared + [11, 12, 13], shared + [21, 22, 23, 24, 25]
    eng = engine(tiny_bundle, block_size=8)
    eng.add_request(gen("a", first, 6))
    run_all(eng)
    hits, misses = eng.cache.hits, eng.cache.misses
    eng.add_request(gen("b", second, 6))
    deltas = run_all(eng)["b"]
    # only the 5 new tokens were fed through the model; 200 came from the cache
    assert eng.cache.hits - hits == 200 and eng.cache.misses - misses == 5
    assert deltas[-1].usage.cached_tokens == 200
    stats = eng.metrics().cache
    assert stats.hits == 200 and stats.misses == len(first) + 5 and stats.node_count >= 2
    assert stats.hit_rate == pytest.approx(200 / (len(first) + len(second)))
    assert stats.total_cached == stats.evictable_size > 0 and stats.protected_size == 0
    assert stats.total_capacity == 8192
    assert tokens_of(deltas) == alone(tiny_bundle, second, 6)


def test_pressure_preempts_and_everyone_finishes(tiny_bundle) -> None:
    ps = prompts(16, base_len=30, seed=2)
    eng = engine(tiny_bundle, kv_cache_tokens=320, block_size=16)
    for i, p in enumerate(ps):
        eng.add_request(gen(f"r{i}", p, max_tokens=24))
    out = run_all(eng)
    assert eng.scheduler.preemptions > 0
    assert eng.pool.num_used <= eng.pool.num_blocks
    roomy = engine(tiny_bundle)  # batching equals one-at-a-time (tested above)
    for i, p in enumerate(ps):
        roomy.add_request(gen(f"r{i}", p, max_tokens=24))
    expected = run_all(roomy)
    assert roomy.scheduler.preemptions == 0
    for i in range(len(ps)):
        assert tokens_of(out[f"r{i}"]) == tokens_of(expected[f"r{i}"]), f"r{i}"
        assert out[f"r{i}"][-1].finish_reason == "length"
    assert eng.leaked_blocks() == 0
    # no prompt shares a prefix: re-admissions after preemption find their own blocks in
    # the cache, but the hit rate counts each request's prompt once, at its first admission
    stats = eng.metrics().cache
    assert all(out[f"r{i}"][-1].usage.cached_tokens == 0 for i in range(len(ps)))
    assert (stats.hits, stats.misses, stats.hit_rate) == (0, sum(map(len, ps)), 0.0)
    cached_blocks = eng.cache.cache.total_size // 16
    assert eng.pool.num_used == cached_blocks and eng.cache.cache.protected_size == 0
    eng.cache.cache.evict(10**6)
    assert eng.pool.num_free == eng.pool.num_blocks


def test_hit_rate_under_pressure_is_cached_over_admitted_prompt_tokens(tiny_bundle) -> None:
    shared = prompts(1, base_len=64, seed=3)[0]
    ps = [shared + p for p in prompts(12, base_len=8, seed=4)]
    eng = engine(tiny_bundle, kv_cache_tokens=384, block_size=16, max_batch_tokens=128)
    for i, p in enumerate(ps):
        eng.add_request(gen(f"r{i}", p, max_tokens=24))
    out = run_all(eng)
    assert eng.scheduler.preemptions > 0
    cached = [out[f"r{i}"][-1].usage.cached_tokens for i in range(len(ps))]
    assert all(c <= len(p) for c, p in zip(cached, ps, strict=True))
    assert sum(c == 64 for c in cached) >= len(ps) // 2  # most found the whole shared prefix
    stats = eng.metrics().cache
    assert (stats.hits, stats.misses) == (sum(cached), sum(map(len, ps)) - sum(cached))
    assert stats.hit_rate == pytest.approx(sum(cached) / sum(map(len, ps)))
    assert stats.hit_rate > 0.3


def test_abort_mid_decode_frees_blocks_next_step(tiny_bundle) -> None:
    eng = engine(tiny_bundle, enable_prefix_cache=False)
    eng.add_request(gen("keep", prompts(1, 40, seed=3)[0], max_tokens=50))
    eng.add_request(gen("drop", prompts(1, 60, seed=4)[0], max_tokens=50))
    for _ in range(3):
        eng.step()
    drop = eng.requests["drop"]
    assert not drop.is_prefill and len(drop.block_table) == 4
    used = eng.pool.num_used
    assert eng.abort("drop") and not eng.abort("nope")
    deltas = eng.step()
    final = [d for d in deltas if d.request_id == "drop"]
    assert len(final) == 1 and final[0].finish_reason == "abort" and final[0].token_ids == []
    assert final[0].usage.completion_tokens == 3
    assert eng.pool.num_used <= used - 4 + 1  # its 4 blocks are back (keep may grow by one)
    assert "drop" not in eng.requests and eng.leaked_blocks() == 0
    assert tokens_of(run_all(eng)["keep"])


def test_abort_while_waiting(tiny_bundle) -> None:
    eng = engine(tiny_bundle, max_running=1)
    eng.add_request(gen("a", [5, 6, 7], 4))
    eng.add_request(gen("b", [5, 6, 8], 4))
    eng.step()
    eng.abort("b")
    out = run_all(eng)
    assert out["b"][-1].finish_reason == "abort" and out["b"][-1].usage.completion_tokens == 0
    assert out["a"][-1].finish_reason == "length"


def test_stop_tokens_eos_and_context_length(tiny_bundle) -> None:
    ids = prompts(1, 10, seed=5)[0]
    free_run = alone(tiny_bundle, ids, 12)
    target = free_run[5]
    first = free_run.index(target)
    eng = engine(tiny_bundle)
    eng.add_request(gen("s", ids, 12, stop_token_ids=[target]))
    out = run_all(eng)["s"]
    assert tokens_of(out) == free_run[: first + 1] and out[-1].finish_reason == "stop"

    # the model's eos ends generation unless ignore_eos
    config = dataclasses.replace(tiny_bundle.config, eos_token_ids=[target])
    eos_eng = engine(dataclasses.replace(tiny_bundle, config=config))
    eos_eng.add_request(gen("e", ids, 12, ignore_eos=False))
    eos_eng.add_request(gen("i", ids, 12, ignore_eos=True))
    out = run_all(eos_eng)
    assert tokens_of(out["e"]) == free_run[: first + 1] and out["e"][-1].finish_reason == "stop"
    assert tokens_of(out["i"]) == free_run and out["i"][-1].finish_reason == "length"

    ctx = tiny_bundle.config.context_length
    long = prompts(1, ctx - 3, seed=6)[0]
    eng.add_request(gen("c", long, 100))
    out = run_all(eng)["c"]
    assert len(tokens_of(out)) == 3 and out[-1].finish_reason == "length"
    with pytest.raises(EngineError) as err:
        eng.add_request(gen("x", long + [1, 2, 3, 4], 5))
    assert err.value.code == "context_too_long" and str(ctx) in err.value.message


def test_refusals(tiny_bundle) -> None:
    eng = engine(tiny_bundle, queue_capacity=2, kv_cache_tokens=64)
    eng.add_request(gen("a", [1, 2], 4))
    with pytest.raises(EngineError) as err:
        eng.add_request(gen("a", [1, 2], 4))
    assert err.value.code == "invalid_request"
    eng.add_request(gen("b", [1, 2], 4))
    with pytest.raises(EngineError) as err:
        eng.add_request(gen("c", [1, 2], 4))
    assert err.value.code == "overloaded"
    with pytest.raises(EngineError) as err:
        eng.add_request(gen("d", [1] * 65, 4), enforce_capacity=False)
    assert err.value.code == "context_too_long" and "KV cache" in err.value.message
    with pytest.raises(EngineError) as err:
        eng.add_request(gen("e", [10**6], 4), enforce_capacity=False)
    assert err.value.code == "invalid_request"
    run_all(eng)
    stats = eng.metrics().engine
    assert (stats.total_requests, stats.completed_requests, stats.failed_requests) == (6, 2, 4)
    assert stats.total_tokens_generated == 8 and stats.queue_capacity == 2


def test_request_too_big_for_the_pool_finishes_with_length(tiny_bundle) -> None:
    eng = engine(tiny_bundle, kv_cache_tokens=32, block_size=16)
    eng.add_request(gen("big", list(range(100, 130)), 50))
    out = run_all(eng)["big"]
    assert out[-1].finish_reason == "length" and len(tokens_of(out)) == 3
    assert eng.leaked_blocks() == 0


def test_logprobs_and_seeded_sampling(tiny_bundle) -> None:
    ids = prompts(1, 10, seed=7)[0]
    params = SamplingParams(
        temperature=1.0, top_k=0, top_p=1.0, seed=1234, logprobs=True, top_logprobs=3
    )
    runs = []
    for extra in (0, 5):
        eng = engine(tiny_bundle)
        for j in range(extra):
            eng.add_request(gen(f"other{j}", prompts(1, 10, seed=8 + j)[0], 6))
        eng.add_request(gen("s", ids, 6, sampling=params))
        runs.append(run_all(eng)["s"])
    assert tokens_of(runs[0]) == tokens_of(runs[1])
    for delta in runs[0]:
        assert len(delta.logprobs) == len(delta.token_ids) == 1
        assert len(delta.top_logprobs[0]) == 3 and delta.logprobs[0] <= 0


def test_logprobs_are_the_models_raw_distribution(tiny_bundle, tiny_dir) -> None:
    """Whatever the sampling parameters, logprobs equal a transformers forward's log-softmax."""
    import torch
    from transformers import AutoModelForCausalLM

    ids = prompts(1, 12, seed=21)[0]
    forced = ids[3]
    cases = {
        "sampled": SamplingParams(
            temperature=0.5, top_k=3, top_p=0.9, repetition_penalty=1.3, seed=7,
            logprobs=True, top_logprobs=4,
        ),
        "biased": SamplingParams(
            temperature=0.0, logit_bias={forced: 100.0}, frequency_penalty=0.5,
            logprobs=True, top_logprobs=4,
        ),
    }  # fmt: skip
    eng = engine(tiny_bundle)
    for name, params in cases.items():
        eng.add_request(gen(name, ids, 6, sampling=params))
    out = run_all(eng)
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    for name in cases:
        tokens = tokens_of(out[name])
        with torch.no_grad():
            logits = hf(torch.tensor([ids + tokens])).logits[0].float()
        logp = torch.log_softmax(logits[len(ids) - 1 : -1], dim=-1)
        want = [logp[i, t].item() for i, t in enumerate(tokens)]
        assert [d.logprobs[0] for d in out[name]] == pytest.approx(want, abs=1e-4), name
        for i, delta in enumerate(out[name]):
            top_ids = [t for t, _ in delta.top_logprobs[0]]
            assert top_ids == torch.topk(logp[i], 4).indices.tolist(), name
    # the bias picked `forced` every time, though the model itself ranks it low
    assert tokens_of(out["biased"]) == [forced] * 6
    assert max(d.logprobs[0] for d in out["biased"]) < -1.0


def test_running_prefill_is_shared_with_a_later_request(tiny_bundle) -> None:
    shared = prompts(1, base_len=128, seed=9)[0]
    eng = engine(tiny_bundle, block_size=16, max_batch_tokens=64)
    eng.add_request(gen("a", shared + [1, 2], 4))
    eng.step()  # a's first 64-token chunk is computed and enters the cache, locked by a
    assert eng.metrics().cache.protected_size == 64
    eng.add_request(gen("b", shared + [3, 4, 5], 4))
    out = run_all(eng)
    assert out["b"][-1].usage.cached_tokens >= 64
    assert tokens_of(out["b"]) == alone(tiny_bundle, shared + [3, 4, 5], 4)
    assert tokens_of(out["a"]) == alone(tiny_bundle, shared + [1, 2], 4)
    assert eng.metrics().cache.protected_size == 0 and eng.leaked_blocks() == 0


def test_random_arrivals_and_aborts_under_pressure(tiny_bundle) -> None:
    import random

    rng = random.Random(42)
    eng = engine(
        tiny_bundle, kv_cache_tokens=256, block_size=16, max_batch_tokens=48, max_running=6
    )
    finals: dict[str, list] = {}
    added, aborted = [], set()
    for step in range(400):
        if step < 150 and rng.random() < 0.3:
            rid = f"r{len(added)}"
            n = rng.randrange(1, 60)
            shared = [7] * rng.choice([0, 16, 32])  # some prompts share a prefix
            eng.add_request(
                gen(rid, shared + prompts(1, n, seed=len(added))[0], rng.randrange(1, 20))
            )
            added.append(rid)
        if added and rng.random() < 0.1:
            rid = rng.choice(added)
            if eng.abort(rid):
                aborted.add(rid)
        for delta in eng.step():
            finals.setdefault(delta.request_id, []).append(delta)
        assert eng.leaked_blocks() == 0
        if step >= 150 and not eng.has_work:
            break
    assert not eng.has_work, "a request got stuck"
    assert set(finals) >= set(added) - aborted
    for rid in added:
        deltas = finals[rid]
        assert sum(d.finished for d in deltas) == 1 and deltas[-1].finished
        # an accepted abort always wins: it is applied before the next step runs
        assert deltas[-1].finish_reason == ("abort" if rid in aborted else "length"), rid
    assert len(added) > 30 and 0 < len(aborted) < len(added)
    assert eng.scheduler.preemptions > 0 and eng.metrics().cache.protected_size == 0
