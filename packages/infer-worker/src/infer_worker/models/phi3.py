"""Phi-3 / Phi-3.5-mini / Phi-4-mini over the paged KV cache.

How the family differs from Llama, as transformers' modeling_phi3 computes it:
- the checkpoint stores fused `qkv_proj` ([q; k; v] rows) and `gate_up_proj`
  ([gate; up] rows), the layout our Llama layers already use;
- rotary covers the first head_dim * partial_rotary_factor dims of each head;
- `longrope` (`su` in older configs) keeps two factor sets chosen by each
  sequence's own length and scales cos/sin by an attention factor (longrope.py);
- `sliding_window`, when set, applies to every layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config import ModelConfig
from ..kv_cache import KVCache
from ..metadata import AttentionMetadata
from ..model import Attention, LlamaModel
from ..rope import RotaryEmbedding, inv_frequencies
from .attend import attend as paged_attention
from .longrope import (
    LongRopeRotary,
    apply_partial_rotary,
    longrope_attention_factor,
    longrope_inv_freq,
)


@dataclass
class PhiSettings:
    """The Phi-3-only numbers. `longrope` holds short_factor, long_factor and
    original_max_position_embeddings when the rope type is longrope."""

    rotary_dim: int
    sliding_window: int | None
    longrope: dict[str, Any] | None


class PhiAttention(Attention):
    def __init__(self, config: ModelConfig, phi: PhiSettings, layer_index: int) -> None:
        super().__init__(config, layer_index)
        self.window = phi.sliding_window

    def forward(self, x, rope, kv_cache: KVCache, meta: AttentionMetadata) -> torch.Tensor:
        tokens = x.shape[0]
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(tokens, self.num_heads, self.head_dim)
        k = k.view(tokens, self.num_kv_heads, self.head_dim)
        v = v.view(tokens, self.num_kv_heads, self.head_dim)
        q, k = apply_partial_rotary(q, k, *rope)
        key_cache, value_cache = kv_cache.layer(self.layer_index)
        out = paged_attention(q, k, v, key_cache, value_cache, meta, self.scale, window=self.window)
        return self.o_proj(out.reshape(tokens, self.q_size))


class Phi3Model(LlamaModel):
    """LlamaModel with Phi-3's rotary. With longrope, positions given to forward are
    rows of the rotary table: position + rotary_row_offset(sequence length)."""

    def __init__(self, config: ModelConfig, phi: PhiSettings) -> None:
        self.phi = phi
        super().__init__(config)
        for i, layer in enumerate(self.layers):
            layer.self_attn = PhiAttention(config, phi, i)
        if phi.longrope is None:
            self.rotary_row_offset = None

    def _make_rotary(self) -> RotaryEmbedding | LongRopeRotary:
        config, phi = self.config, self.phi
        if phi.longrope is None:
            inv_freq = inv_frequencies(phi.rotary_dim, config.rope_theta, None)
            return RotaryEmbedding(inv_freq, config.context_length)
        scaling = phi.longrope
        original = int(scaling["original_max_position_embeddings"])
        return LongRopeRotary(
            longrope_inv_freq(phi.rotary_dim, config.rope_theta, scaling["short_factor"]),
            longrope_inv_freq(phi.rotary_dim, config.rope_theta, scaling["long_factor"]),
            switch=original,
            max_positions=config.context_length,
            attention_factor=longrope_attention_factor(scaling, config.context_length, original),
        )

    def rotary_row_offset(self, total_tokens: int) -> int:
        """Row offset for a sequence holding total_tokens tokens after this step."""
        return self.rotary.row_offset(total_tokens)
