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
) -> torch.Tensor:
    """Write key/value [T, KVH, D] into meta.slot_mapping, then attend; returns [T, H, D].

    window: the query at position p sees positions > p - window (None: all <= p);
    softcap: scores tanh-capped before the softmax (None: off). Uses the Triton
    kernel on CUDA and the torch implementation elsewhere.
    """
    write_kv(key_cache, value_cache, key, value, meta.slot_mapping)
    if query.is_cuda and _triton_available():
        from .attention_triton import paged_attention_triton

        return paged_attention_triton(
            query, key_cache, value_cache, meta, scale, window=window, softcap=softcap
        )
    return paged_attention_torch(
        query, key_cache, value_cache, meta, scale, window=window, softcap=softcap
    )


@functools.cache
def _triton_available() -> bool:
    """Triton ships with CUDA torch builds; without it CUDA falls back to the torch path."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
