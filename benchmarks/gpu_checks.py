"""Checks for gpu_bench.py: paged attention (Triton vs the torch path) at the Llama-3-8B
head layout, the device-to-device copy bandwidth (both CUDA only), and last-token
logits of the engine's model and of transformers against transformers in float32."""

from __future__ import annotations

from typing import Any

import torch


def attention_kernel(device: torch.device, batch: int, context: int) -> dict:
    """Triton paged attention vs the torch path at the 8B head layout (bf16, decode and prefill)."""
    from triton.testing import do_bench

    from infer_worker.attention_cpu import paged_attention_torch
    from infer_worker.attention_triton import paged_attention_triton
    from infer_worker.metadata import AttentionMetadata

    heads, kv_heads, dim, page = 32, 8, 128, 16
    blocks_per_seq = -(-context // page)
    num_blocks = batch * blocks_per_seq + 1
    gen = torch.Generator(device=device).manual_seed(1)
    k_cache = torch.randn(num_blocks, page, kv_heads, dim, device=device, generator=gen).bfloat16()
    v_cache = torch.randn(num_blocks, page, kv_heads, dim, device=device, generator=gen).bfloat16()
    perm = torch.randperm(num_blocks - 1, generator=torch.Generator().manual_seed(2)) + 1
    tables = perm.reshape(batch, blocks_per_seq).tolist()
    scale = dim**-0.5
    result = {}
    for name, q_len in (("decode", 1), ("prefill128", 128)):
        meta = AttentionMetadata.build([q_len] * batch, [context] * batch, tables, page, device)
        q = torch.randn(batch * q_len, heads, dim, device=device, generator=gen).bfloat16()
        got = paged_attention_triton(q, k_cache, v_cache, meta, scale).float()
        want = paged_attention_torch(q.float(), k_cache.float(), v_cache.float(), meta, scale)
        rel = ((got - want).norm() / want.norm()).item()
        t_triton = do_bench(
            lambda q=q, m=meta: paged_attention_triton(q, k_cache, v_cache, m, scale)
        )
        t_torch = do_bench(lambda q=q, m=meta: paged_attention_torch(q, k_cache, v_cache, m, scale))
        kv_bytes = 2 * batch * context * kv_heads * dim * 2
        result[name] = {
            "rel_err": rel,
            "triton_ms": round(t_triton, 4),
            "torch_ms": round(t_torch, 4),
            "kv_GBps_triton": round(kv_bytes / t_triton / 1e6, 1),
        }
    return result


def copy_bandwidth(device: torch.device) -> float:
    """Device-to-device copy, GB/s counting bytes read plus written."""
    from triton.testing import do_bench

    src = torch.randn(256 * 1024 * 1024, device=device)  # 1 GiB
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src))
    return round(2 * src.numel() * 4 / ms / 1e6, 1)


def logits_check(hf: Any, bundle: Any, prompts: list[list[int]]) -> dict:
    """Last-token logits of the engine's model (bf16) and of transformers (bf16) against
    transformers in float32 (converted in place, so this runs last)."""
    from infer_worker import AttentionMetadata, KVCache

    n, length = len(prompts), len(prompts[0])
    device, page = bundle.device, 16
    per_seq = -(-length // page)
    cache = KVCache(bundle.config, n * per_seq + 1, page, bundle.dtype, device)
    tables = [[1 + s * per_seq + j for j in range(per_seq)] for s in range(n)]
    meta = AttentionMetadata.build([length] * n, [length] * n, tables, page, device)
    ids = torch.tensor(prompts, device=device)
    with torch.inference_mode():
        pos = torch.arange(length, device=device).repeat(n)
        hidden = bundle.model(ids.flatten(), pos, cache, meta)
        ours = bundle.model.compute_logits(hidden[length - 1 :: length])
        theirs = hf(ids).logits[:, -1].float()
        del cache, hidden
        hf.float()
        ref = hf(ids).logits[:, -1].float()
    top2 = ref.topk(2, dim=-1).values

    def rel(x: torch.Tensor) -> float:
        return round(((x - ref).norm() / ref.norm()).item(), 5)

    return {
        "engine_bf16_rel_err": rel(ours),
        "transformers_bf16_rel_err": rel(theirs),
        "engine_top1_equal": int((ours.argmax(-1) == ref.argmax(-1)).sum()),
        "transformers_top1_equal": int((theirs.argmax(-1) == ref.argmax(-1)).sum()),
        "of": n,
        "ref_top2_gap_median": round((top2[:, 0] - top2[:, 1]).median().item(), 4),
        "ref_logit_std": round(ref.std().item(), 3),
    }
