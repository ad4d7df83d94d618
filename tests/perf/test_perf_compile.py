"""The torch.compile'd decode step (infer_worker.compile) against the eager model.

A tiny random-weight Llama in bf16 keeps the compile short (one bucket, no
autotune). Padding rows go to a scratch block; the compiled step writes the
same keys/values into the cache as the eager one and gives the same greedy
tokens, with logits within bf16 rounding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from compile_runs import BS, PROMPTS, eager_and_compiled, new_cache

from infer_protocol import GenerateRequest, SamplingParams
from infer_scheduler.engine import Engine
from infer_scheduler.options import EngineOptions
from infer_worker import load_model
from infer_worker.compile import CompiledDecode, cache_dir
from infer_worker.testing import write_tiny_llama


@pytest.fixture(scope="module")
def tiny_bf16(tmp_path_factory):
    path = write_tiny_llama(tmp_path_factory.mktemp("tiny") / "m", num_layers=2)
    bundle = load_model(str(path), device="cpu", dtype="bfloat16")
    bundle.model.use_int8(8)  # the int8 linears are part of the small-bucket graph
    return bundle


@pytest.fixture(scope="module")
def compiled(tiny_bf16, tmp_path_factory, cpp_kernel):
    """Eager and compiled runs of the same prompts; the graphs' cache under a private dir."""
    folder = tmp_path_factory.mktemp("inductor")
    return (*eager_and_compiled(tiny_bf16, folder), folder)


def test_compiled_decode_matches_eager(compiled) -> None:
    (want, want_logits, _), (got, got_logits, _), graphs, _ = compiled
    assert graphs.ready == {4}
    assert got == want
    assert got_logits.shape == want_logits.shape == (6, len(PROMPTS), 49152)
    spread = want_logits.max() - want_logits.min()
    assert (got_logits - want_logits).abs().max() <= 0.02 * spread  # bf16 rounding, fused


def test_compiled_decode_writes_the_same_cache(compiled) -> None:
    """Keys/values of every real block match; only the scratch block takes the padding row."""
    (_, _, want_cache), (_, _, got_cache), graphs, _ = compiled
    real = slice(0, graphs.scratch_block)
    for want, got in (
        (want_cache.key_cache, got_cache.key_cache),
        (want_cache.value_cache, got_cache.value_cache),
    ):
        torch.testing.assert_close(
            got[:, real].float(), want[:, real].float(), atol=0.05, rtol=0.02
        )
        assert bool(want[:, graphs.scratch_block].eq(0).all())


def test_compile_cache_dir_is_used(compiled) -> None:
    *_, folder = compiled
    assert any(Path(folder).rglob("*.py")), "inductor wrote its generated code to the cache dir"


def test_default_cache_dir(monkeypatch) -> None:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert cache_dir() == Path.home() / ".cache" / "infer" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere")
    assert cache_dir() == Path("/somewhere")


def test_batches_without_a_compiled_bucket_fall_back(compiled) -> None:
    *_, graphs, _ = compiled
    assert graphs.bucket_for(4) == 4 and graphs.bucket_for(1) == 4
    assert graphs.bucket_for(5) is None
    assert graphs.logits([1] * 5, [0] * 5, [1] * 5, [[1]] * 5) is None


def test_scratch_block_must_exist(tiny_bf16) -> None:
    cache = new_cache(tiny_bf16)
    with pytest.raises(ValueError, match="scratch block"):
        CompiledDecode(tiny_bf16.model, cache, cache.num_blocks)


def engine_tokens(bundle, folder: Path, **options) -> tuple[dict[str, list[int]], Engine]:
    """Greedy tokens of three requests decoded together by a real engine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
        engine = Engine(bundle, EngineOptions(kv_cache_tokens=256, block_size=BS, **options))
    greedy = SamplingParams(temperature=0.0)
    for i, prompt in enumerate(PROMPTS):
        engine.add_request(
            GenerateRequest(f"r{i}", prompt, max_tokens=6, sampling=greedy, ignore_eos=True)
        )
    tokens: dict[str, list[int]] = {}
    while engine.has_work:
        for delta in engine.step():
            tokens.setdefault(delta.request_id, []).extend(delta.token_ids)
    return tokens, engine


def test_engine_compile_on_gives_eager_tokens(tiny_bf16, compiled) -> None:
    """--compile on: the buckets are compiled before the engine serves, decode steps use them."""
    *_, folder = compiled
    want, plain = engine_tokens(tiny_bf16, folder)
    got, engine = engine_tokens(tiny_bf16, folder, compile="on", compile_buckets=(4,))
    assert plain.runner.compiled is None  # the default is off: nothing compiled
    assert engine.runner.compiled.ready == {4} and engine.runner.compiled.steps >= 5
    assert engine.runner.kv_cache.num_blocks == plain.runner.kv_cache.num_blocks + 1
    assert got == want


def test_compile_options_are_checked() -> None:
    with pytest.raises(ValueError, match="compile must be one of"):
        EngineOptions(compile="fast")
    with pytest.raises(ValueError, match="compile_buckets"):
        EngineOptions(compile="auto", compile_buckets=(0, 4))


def test_graph_calls_the_cpp_dispatcher_ops(compiled) -> None:
    """With the C++ library built the graph calls infer_cpu::* (not the Python custom ops),
    and those ops compute what the Python ones do."""
    _, _, graphs, _ = compiled
    assert graphs._step.ops is torch.ops.infer_cpu
    torch.manual_seed(0)
    x = torch.randn(5, 32).to(torch.bfloat16)
    q = torch.randint(-127, 128, (24, 32), dtype=torch.int8)
    scale = torch.rand(24) / 100
    bias = torch.randn(24).to(torch.bfloat16)
    assert torch.equal(
        torch.ops.infer_cpu.int8_linear(x, q, scale, bias, False),
        torch.ops.infer.int8_linear(x, q, scale, bias, False),
    )
    layers, blocks, block, kvh, dim = 2, 6, 4, 2, 16
    caches = [torch.randn(layers, blocks, block, kvh, dim) for _ in range(2)]
    caches += [c.clone() for c in caches]
    query, key, value = torch.randn(2, 4, dim), torch.randn(2, kvh, dim), torch.randn(2, kvh, dim)
    tables = torch.tensor([[1, 2], [3, 4]], dtype=torch.int32)
    lens = torch.tensor([5, 7], dtype=torch.int32)
    slots = torch.tensor([1 * block + 0, 4 * block + 2])  # the new token of each sequence
    for window, softcap in ((0, 0.0), (3, 2.0)):  # plain; sliding window and soft-capped
        got = torch.ops.infer_cpu.paged_decode(
            query, key, value, caches[0], caches[1], 1, tables, lens, slots, 0.25, window, softcap
        )
        want = torch.ops.infer.paged_decode(
            query, key, value, caches[2], caches[3], 1, tables, lens, slots, 0.25, window, softcap
        )
        torch.testing.assert_close(got, want)
    assert torch.equal(caches[0][1, 4, 2], key[1]) and torch.equal(caches[1][1, 1, 0], value[0])
