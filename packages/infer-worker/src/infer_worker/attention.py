"""The one attention entry point over the paged KV cache."""

from __future__ import annotations

import functools

import torch

from .attention_cpu import paged_attention_torch, write_kv
from .metadata import AttentionMetadata


def paged_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    window: int | None = None,
    softcap: float | None = None,
    scales: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Write key/value [T, KVH, D] into meta.slot_mapping, then attend; returns [T, H, D].

    window: the query at position p sees positions > p - window (None: all <= p);
    softcap: scores tanh-capped before the softmax (None: off); scales: the row
    scales of int8 pages (kv_quant.py), None for pages in the model's dtype. Uses
    the Triton kernel on CUDA (not for int8 pages: the engine refuses them there)
    and the torch / C++ CPU paths of attention_cpu.py elsewhere.
    """
    write_kv(key_cache, value_cache, key, value, meta.slot_mapping, scales)
    if scales is not None and query.is_cuda:
        raise ValueError("int8 KV pages are read by the CPU attention paths only")
    if query.is_cuda and _triton_available():
        from .attention_triton import paged_attention_triton

        return paged_attention_triton(
            query, key_cache, value_cache, meta, scale, window=window, softcap=softcap
        )
    return paged_attention_torch(
        query, key_cache, value_cache, meta, scale, window=window, softcap=softcap, scales=scales
    )


@functools.cache
def _triton_available() -> bool:
    """Triton ships with CUDA torch builds; without it CUDA falls back to the torch path."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
