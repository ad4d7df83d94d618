"""Eager and compiled greedy decode runs of a tiny bf16 model, for the --compile tests
(bf16 pages in test_perf_compile.py, int8 pages in test_perf_compile_kv_int8.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from infer_worker import AttentionMetadata, KVCache
from infer_worker.compile import CompiledDecode

BS = 4
PROMPTS = [[1, 5, 9, 13, 2, 7], [1, 3], [1, 8, 8, 8, 8, 8, 8, 8, 8, 4]]


def new_cache(bundle, kv_dtype: torch.dtype | None = None) -> KVCache:
    """Room for PROMPTS (8 blocks each, from block 1) and a scratch block."""
    return KVCache(bundle.config, len(PROMPTS) * 8 + 2, BS, kv_dtype or bundle.dtype, "cpu")


def eager_and_compiled(bundle, folder, kv_dtype: torch.dtype | None = None) -> tuple:
    """(eager run, compiled run, the CompiledDecode); its graphs cached under `folder`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
        eager = decode(bundle, None, 6, kv_dtype)
        model = copy.deepcopy(bundle.model)
        cache = new_cache(bundle, kv_dtype)
        graphs = CompiledDecode(model, cache, cache.num_blocks - 1, buckets=(4,), autotune_max=0)
        graphs.start(wait=True)
        got = decode(bundle, graphs, 6, kv_dtype)
    return eager, got, graphs


def decode(bundle, graphs: CompiledDecode | None, steps: int, kv_dtype=None) -> tuple:
    """Greedy tokens, per-step float32 logits and the final cache; prefill eager (outside
    inference_mode), decode via graphs when given."""
    model = bundle.model if graphs is None else graphs.model
    cache = new_cache(bundle, kv_dtype) if graphs is None else graphs.kv_cache
    tables = [list(range(1 + 8 * s, 9 + 8 * s)) for s in range(len(PROMPTS))]
    outs, logits_seen = [], []
    for s, prompt in enumerate(PROMPTS):
        meta = AttentionMetadata.build([len(prompt)], [len(prompt)], [tables[s]], BS)
        hidden = model(torch.tensor(prompt), torch.arange(len(prompt)), cache, meta)
        outs.append([int(model.compute_logits(hidden[-1:]).argmax())])
    for _ in range(steps):
        lens = [len(p) + len(o) for p, o in zip(PROMPTS, outs, strict=True)]
        ids = [o[-1] for o in outs]
        if graphs is None:
            meta = AttentionMetadata.build([1] * len(ids), lens, tables, BS)
            hidden = model(torch.tensor(ids), torch.tensor(lens) - 1, cache, meta)
            logits = model.compute_logits(hidden)
        else:
            logits = graphs.logits(ids, [n - 1 for n in lens], lens, tables)
            assert logits is not None, "bucket 4 is compiled: 3 rows must use it"
        logits_seen.append(logits.float())
        for s, token in enumerate(logits.argmax(-1).tolist()):
            outs[s].append(token)
    return outs, torch.stack(logits_seen), cache
