"""Interim: paged attention with the window/softcap keywords only when they are set
(until the attention front with per-layer window, softcap and scale is in place)."""

from __future__ import annotations

import torch

from ..attention import paged_attention


def attend(q, k, v, key_cache, value_cache, meta, scale, window=None, softcap=None) -> torch.Tensor:
    if window is None and softcap is None:
        return paged_attention(q, k, v, key_cache, value_cache, meta, scale)
    return paged_attention(
        q, k, v, key_cache, value_cache, meta, scale, window=window, softcap=softcap
    )
