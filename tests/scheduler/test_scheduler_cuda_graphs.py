"""Decode steps through DecodeGraphs' static buffers equal plain forwards; padding stays in
the scratch block. The buffer logic runs eagerly on the CPU; capture and replay need CUDA."""

from __future__ import annotations

import pytest
import torch

from infer_scheduler import LLM
from infer_scheduler.cuda_graphs import DecodeGraphs
from infer_worker import AttentionMetadata, KVCache

BLOCK = 4
NUM_BLOCKS = 40  # block 40 is the scratch block


def step(bundle, cache, ids, starts, tables, graphs=None) -> torch.Tensor:
    """Feed ids[s] (a list) at positions starts[s].. of each sequence; last-token logits."""
    q_lens = [len(c) for c in ids]
    meta = AttentionMetadata.build(
        q_lens, [s + n for s, n in zip(starts, q_lens, strict=True)], tables, BLOCK, "cpu"
    )
    flat = torch.tensor([t for c in ids for t in c])
    pos = torch.tensor([s + j for s, c in zip(starts, ids, strict=True) for j in range(len(c))])
    with torch.inference_mode():
        if graphs is not None:
            assert graphs.fits(meta)
            hidden = graphs.forward(flat, pos, meta)
        else:
            hidden = bundle.model(flat, pos, cache, meta)
        last = torch.tensor(q_lens).cumsum(0) - 1
        return bundle.model.compute_logits(hidden[last])


def test_static_buffers_match_plain_forward(tiny_bundle) -> None:
    prompts = [[5, 6, 7, 8, 9], [40, 41, 42], [300, 301, 302, 303, 304, 305, 306]]
    tables = [[3, 17, 9, 1, 30], [0, 22, 5, 11, 12], [2, 8, 25, 26, 27]]  # block 0 is real
    caches = []
    for _ in range(2):
        cache = KVCache(tiny_bundle.config, NUM_BLOCKS + 1, BLOCK, torch.float32, "cpu")
        step(tiny_bundle, cache, prompts, [0, 0, 0], tables)
        caches.append(cache)
    plain, static = caches
    graphs = DecodeGraphs(tiny_bundle.model, static, NUM_BLOCKS, capture=False)
    tokens = [[p[-1] + 1] for p in prompts]
    lens = [len(p) for p in prompts]
    for n in range(6):
        live = [0, 1, 2] if n < 3 else [0, 2]  # batch 3 (padded to 4), then 2
        ids = [[tokens[s][-1]] for s in live]
        starts = [lens[s] + len(tokens[s]) - 1 for s in live]
        rows = [tables[s] for s in live]
        want = step(tiny_bundle, plain, ids, starts, rows)
        got = step(tiny_bundle, static, ids, starts, rows, graphs)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        for row, s in enumerate(live):
            tokens[s].append(int(want[row].argmax()))
    # the same keys/values landed in the real blocks (up to GEMM rounding: 3 vs 4 rows) ...
    real = slice(0, NUM_BLOCKS)
    torch.testing.assert_close(static.key_cache[:, real], plain.key_cache[:, real])
    torch.testing.assert_close(static.value_cache[:, real], plain.value_cache[:, real])
    # ... and the padding row wrote only into the scratch block, never into an unused block
    unused = sorted(set(range(NUM_BLOCKS)) - {b for t in tables for b in t})
    assert static.key_cache[:, unused].abs().sum() == 0
    assert static.value_cache[:, unused].abs().sum() == 0
    assert static.key_cache[:, NUM_BLOCKS].abs().sum() > 0
    assert plain.key_cache[:, NUM_BLOCKS].abs().sum() == 0


def test_batches_past_the_largest_class_do_not_fit(tiny_bundle) -> None:
    cache = KVCache(tiny_bundle.config, NUM_BLOCKS + 1, BLOCK, torch.float32, "cpu")
    graphs = DecodeGraphs(tiny_bundle.model, cache, NUM_BLOCKS, capture=False)
    decode = AttentionMetadata.build([1] * 300, [3] * 300, [[1]] * 300, BLOCK, "cpu")
    prefill = AttentionMetadata.build([2, 1], [2, 3], [[1], [2]], BLOCK, "cpu")
    assert not graphs.fits(decode) and not graphs.fits(prefill)
    assert graphs.fits(AttentionMetadata.build([1] * 5, [3] * 5, [[1]] * 5, BLOCK, "cpu"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_graphs_generate_like_eager(tiny_dir, dtype: str) -> None:
    """Requests finish at different steps, so decode batches of 8, 7, ... 1 replay graphs."""
    prompts = [[100 + 7 * i + j for j in range(3 + 5 * i)] for i in range(8)]
    max_tokens = [4 + 2 * i for i in range(8)]
    runs = []
    for graphs in (True, False):
        llm = LLM(
            str(tiny_dir), device="cuda", dtype=dtype, kv_cache_tokens=2048, cuda_graphs=graphs
        )
        outs = llm.generate(prompts, max_tokens=max_tokens, ignore_eos=True)
        assert [len(o.token_ids) for o in outs] == max_tokens
        assert llm.engine.leaked_blocks() == 0
        runs.append([o.token_ids for o in outs])
        if graphs:
            assert sorted(llm.engine.runner.graphs.graphs) == [1, 2, 4, 8]
        else:
            assert llm.engine.runner.graphs is None
    same = sum(a == b for a, b in zip(*runs, strict=True))
    assert same >= (8 if dtype == "float32" else 6)
