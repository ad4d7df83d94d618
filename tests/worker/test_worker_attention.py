"""Paged attention equals a dense causal reference, on the CPU and (where present) CUDA."""

from __future__ import annotations

import random

import pytest
import torch

from infer_worker.attention import paged_attention
from infer_worker.attention_cpu import paged_attention_torch, write_kv
from infer_worker.metadata import AttentionMetadata


def dense_reference(q, k, v, q_len: int, scale: float) -> torch.Tensor:
    """q [Q, H, D] for the last q_len of k/v [L, KVH, D]; float64 causal attention."""
    total, kv_heads, _ = k.shape
    heads = q.shape[1]
    k = k.double().repeat_interleave(heads // kv_heads, dim=1)
    v = v.double().repeat_interleave(heads // kv_heads, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.double(), k) * scale
    q_pos = torch.arange(total - q_len, total)[:, None]
    scores = scores.masked_fill(torch.arange(total)[None, :] > q_pos, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)


def make_case(
    rng: random.Random,
    *,
    kinds: list[str],
    block_size: int,
    heads: int,
    kv_heads: int,
    dim: int,
    dtype: torch.dtype,
    device: str,
    max_len: int = 80,
):
    """Random sequences (decode / fresh prefill / prefill after a cached prefix)."""
    num_blocks = 1 + sum(-(-max_len // block_size) for _ in kinds) + 3
    key_cache = torch.randn(num_blocks, block_size, kv_heads, dim, dtype=dtype, device=device)
    value_cache = torch.randn_like(key_cache)  # garbage in unused slots must never be read
    free = list(range(1, num_blocks))
    rng.shuffle(free)
    seqs = []
    for kind in kinds:
        total = rng.randint(2, max_len)
        q_len = {
            "decode": 1,
            "fresh": total,
            "prefix": rng.randint(2, total - 1) if total > 2 else 1,
        }[kind]
        table = [free.pop() for _ in range(-(-total // block_size))]
        k = torch.randn(total, kv_heads, dim, dtype=dtype, device=device)
        v = torch.randn(total, kv_heads, dim, dtype=dtype, device=device)
        q = torch.randn(q_len, heads, dim, dtype=dtype, device=device)
        cached = total - q_len
        if cached:
            slots = torch.tensor(
                [table[p // block_size] * block_size + p % block_size for p in range(cached)],
                device=device,
            )
            write_kv(key_cache, value_cache, k[:cached], v[:cached], slots)
        seqs.append((q, k, v, q_len, total, table))
    meta = AttentionMetadata.build(
        [s[3] for s in seqs], [s[4] for s in seqs], [s[5] for s in seqs], block_size, device
    )
    q = torch.cat([s[0] for s in seqs])
    new_k = torch.cat([s[1][s[4] - s[3] :] for s in seqs])
    new_v = torch.cat([s[2][s[4] - s[3] :] for s in seqs])
    return q, new_k, new_v, key_cache, value_cache, meta, seqs


def check(
    device: str,
    dtype: torch.dtype,
    seed: int,
    block_size: int,
    kinds: list[str],
    heads: int = 8,
    kv_heads: int = 2,
    dim: int = 32,
    tol: float = 1e-5,
) -> None:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    q, k, v, key_cache, value_cache, meta, seqs = make_case(
        rng,
        kinds=kinds,
        block_size=block_size,
        heads=heads,
        kv_heads=kv_heads,
        dim=dim,
        dtype=dtype,
        device=device,
    )
    scale = dim**-0.5
    out = paged_attention(q, k, v, key_cache, value_cache, meta, scale)
    assert out.shape == q.shape and out.dtype == dtype
    start = 0
    for sq, sk, sv, q_len, _total, _table in seqs:
        expected = dense_reference(sq.cpu(), sk.cpu(), sv.cpu(), q_len, scale)
        got = out[start : start + q_len].double().cpu()
        err = (got - expected).abs().max().item()
        assert err < tol, f"kinds={kinds} block_size={block_size} err={err}"
        start += q_len
    # the new keys/values were written into their slots
    flat_k = key_cache.view(-1, kv_heads, dim)
    assert torch.equal(flat_k[meta.slot_mapping], k.to(dtype))


MIXES = [
    ["decode"] * 5,
    ["fresh"],
    ["prefix", "decode", "fresh", "decode"],
    ["decode", "prefix", "prefix"],
    ["fresh", "fresh", "decode", "prefix", "decode", "decode"],
]


@pytest.mark.parametrize("block_size", [1, 4, 16, 32])
@pytest.mark.parametrize("mix", range(len(MIXES)))
def test_cpu_paged_attention_matches_dense(block_size: int, mix: int) -> None:
    for seed in range(3):
        check("cpu", torch.float32, seed * 31 + mix, block_size, MIXES[mix])


@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(4, 4, 16), (9, 3, 64), (8, 1, 8)])
def test_cpu_paged_attention_head_layouts(heads: int, kv_heads: int, dim: int) -> None:
    check("cpu", torch.float32, 7, 16, MIXES[4], heads=heads, kv_heads=kv_heads, dim=dim)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_paged_attention_half_precision(dtype: torch.dtype) -> None:
    check("cpu", dtype, 3, 16, MIXES[2], tol=3e-2)


def test_torch_path_ignores_padding_in_block_tables() -> None:
    """Table entries past a sequence's length (padding) are never read."""
    torch.manual_seed(0)
    key_cache = torch.randn(8, 4, 1, 8)
    value_cache = torch.randn(8, 4, 1, 8)
    meta = AttentionMetadata.build([1, 1], [3, 9], [[5], [1, 2, 3]], 4)
    q = torch.randn(2, 2, 8)
    base = paged_attention_torch(q, key_cache, value_cache, meta, 0.3)
    key_cache[0] = 1e4  # block 0 pads the first table
    value_cache[0] = 1e4
    again = paged_attention_torch(q, key_cache, value_cache, meta, 0.3)
    assert torch.equal(base, again)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("block_size", [1, 16, 32])
@pytest.mark.parametrize("mix", range(len(MIXES)))
def test_cuda_paged_attention_matches_dense(block_size: int, mix: int) -> None:
    for seed in range(3):
        check("cuda", torch.float32, seed * 17 + mix, block_size, MIXES[mix], tol=2e-3)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(9, 3, 64), (32, 8, 128), (8, 1, 80)])
def test_cuda_paged_attention_half(dtype: torch.dtype, heads: int, kv_heads: int, dim: int) -> None:
    check("cuda", dtype, 5, 16, MIXES[4], heads=heads, kv_heads=kv_heads, dim=dim, tol=3e-2)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(32, 8, 128), (8, 1, 80), (4, 4, 256)])
def test_cuda_paged_attention_float32_head_layouts(heads: int, kv_heads: int, dim: int) -> None:
    check(
        "cuda", torch.float32, 11, 16, MIXES[4], heads=heads, kv_heads=kv_heads, dim=dim, tol=2e-3
    )


INTERPRETER_SCRIPT = """
import sys, torch
sys.path.insert(0, {here!r})
import test_worker_attention as t
from infer_worker.attention_cpu import write_kv
from infer_worker.attention_triton import paged_attention_triton

def kernel(q, k, v, key_cache, value_cache, meta, scale):
    write_kv(key_cache, value_cache, k, v, meta.slot_mapping)
    return paged_attention_triton(q, key_cache, value_cache, meta, scale)

t.paged_attention = kernel
for block_size in (1, 16, 32):
    for mix in range(len(t.MIXES)):
        t.check("cpu", torch.float32, mix, block_size, t.MIXES[mix], tol=1e-4)
for heads, kv_heads, dim in [(9, 3, 64), (8, 1, 80), (4, 4, 16)]:
    t.check("cpu", torch.float32, 5, 16, t.MIXES[4], heads=heads, kv_heads=kv_heads, dim=dim, tol=1e-4)
print("KERNEL OK")
"""


def test_triton_kernel_in_interpreter_matches_dense() -> None:
    """The CUDA kernel's logic, run by Triton's CPU interpreter (TRITON_INTERPRET=1)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = INTERPRETER_SCRIPT.format(here=str(Path(__file__).parent))
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "KERNEL OK" in result.stdout


WINDOW_SCRIPT = """
import torch
from infer_worker.attention_cpu import paged_attention_torch, write_kv
from infer_worker.attention_triton import paged_attention_triton
from infer_worker.metadata import AttentionMetadata

torch.manual_seed(0)
bs, kvh, heads, dim = 8, 2, 4, 16
cache = [torch.randn(40, bs, kvh, dim) for _ in range(2)]
# a decode, a prefill chunk after a cached prefix, a whole prompt
q_lens, lens = [1, 9, 30], [45, 40, 30]
tables = [list(range(1, 7)), list(range(7, 12)), list(range(12, 16))]
meta = AttentionMetadata.build(q_lens, lens, tables, bs)
q = torch.randn(sum(q_lens), heads, dim)
for window, softcap in ((0, 0.0), (7, 0.0), (0, 1.5), (12, 2.0), (1, 0.0)):
    want = paged_attention_torch(q, *cache, meta, 0.3, window=window or None, softcap=softcap or None)
    got = paged_attention_triton(q, *cache, meta, 0.3, window=window or None, softcap=softcap or None)
    assert (got - want).abs().max() < 1e-4, (window, softcap, (got - want).abs().max())
print("WINDOW OK")
"""


def test_triton_window_and_softcap_in_interpreter_match_torch() -> None:
    """Sliding window and soft-cap of the Triton kernel, run by Triton's CPU interpreter."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, "-c", WINDOW_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WINDOW OK" in result.stdout
