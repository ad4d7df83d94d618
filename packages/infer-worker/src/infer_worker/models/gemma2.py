"""Gemma 2 (and, with q/k norm and two rope bases, Gemma 3 text) over the paged KV cache.

How the family differs from Llama, as transformers' modeling_gemma2 computes it:
- RMSNorm multiplies by (1 + w), in float32, before casting back;
- the embedding output is multiplied by sqrt(hidden_size) cast to the model dtype;
- each layer: x + post_attention_norm(attn(input_norm(x))), then
  x + post_feedforward_norm(mlp(pre_feedforward_norm(x)));
- attention scale is query_pre_attn_scalar ** -0.5, scores are soft-capped
  (tanh(s / cap) * cap) before the mask, and layers of type "sliding_attention"
  see only the last `sliding_window` positions;
- the MLP is gelu_pytorch_tanh(gate) * up;
- final logits are soft-capped by final_logit_softcapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..kv_cache import KVCache
from ..metadata import AttentionMetadata
from ..model import Linear, LlamaModel
from ..rope import RotaryEmbedding, apply_rotary, inv_frequencies
from .attend import attend as paged_attention


@dataclass
class GemmaSettings:
    """The Gemma-only numbers; `sliding[i]` says whether layer i is a local layer."""

    query_pre_attn_scalar: float
    attn_softcap: float | None
    final_softcap: float | None
    sliding_window: int | None
    sliding: list[bool]
    qk_norm: bool = False  # Gemma 3
    local_rope_theta: float | None = None  # Gemma 3: local layers' base (default rope)


class GemmaRMSNorm(nn.Module):
    """x / rms(x) * (1 + w), all in float32, then cast to x's dtype."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.float())).to(x.dtype)


def softcap(x: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.tanh(x / cap) * cap


class GemmaAttention(nn.Module):
    def __init__(self, config: ModelConfig, gemma: GemmaSettings, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.q_size = config.num_heads * config.head_dim
        self.kv_size = config.num_kv_heads * config.head_dim
        self.scale = gemma.query_pre_attn_scalar**-0.5
        self.softcap = gemma.attn_softcap
        self.window = gemma.sliding_window if gemma.sliding[layer_index] else None
        self.qkv_proj = Linear(config.hidden_size, self.q_size + 2 * self.kv_size, bias=False)
        self.o_proj = Linear(self.q_size, config.hidden_size, bias=False)
        self.q_norm = GemmaRMSNorm(config.head_dim, config.rms_norm_eps) if gemma.qk_norm else None
        self.k_norm = GemmaRMSNorm(config.head_dim, config.rms_norm_eps) if gemma.qk_norm else None

    def forward(self, x, rope, kv_cache: KVCache, meta: AttentionMetadata) -> torch.Tensor:
        tokens = x.shape[0]
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(tokens, self.num_heads, self.head_dim)
        k = k.view(tokens, self.num_kv_heads, self.head_dim)
        v = v.view(tokens, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, k, *rope)
        key_cache, value_cache = kv_cache.layer(self.layer_index)
        out = paged_attention(
            q,
            k,
            v,
            key_cache,
            value_cache,
            meta,
            self.scale,
            window=self.window,
            softcap=self.softcap,
        )
        return self.o_proj(out.reshape(tokens, self.q_size))


class GemmaMLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gate_up_proj = Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.intermediate_size, dim=-1)
        return self.down_proj(F.gelu(gate, approximate="tanh") * up)


class GemmaDecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, gemma: GemmaSettings, layer_index: int) -> None:
        super().__init__()
        eps = config.rms_norm_eps
        self.sliding = gemma.sliding[layer_index]
        self.input_layernorm = GemmaRMSNorm(config.hidden_size, eps)
        self.self_attn = GemmaAttention(config, gemma, layer_index)
        self.post_attention_layernorm = GemmaRMSNorm(config.hidden_size, eps)
        self.pre_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps)
        self.mlp = GemmaMLP(config)
        self.post_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps)

    def forward(self, x, rope, kv_cache, meta) -> torch.Tensor:
        h = self.self_attn(self.input_layernorm(x), rope, kv_cache, meta)
        x = x + self.post_attention_layernorm(h)
        h = self.mlp(self.pre_feedforward_layernorm(x))
        return x + self.post_feedforward_layernorm(h)


class GemmaModel(LlamaModel):
    """LlamaModel's interface (forward, compute_logits, load_hf_weights) with Gemma layers."""

    def __init__(self, config: ModelConfig, gemma: GemmaSettings) -> None:
        self.gemma = gemma
        super().__init__(config)
        self.layers = nn.ModuleList(
            GemmaDecoderLayer(config, gemma, i) for i in range(config.num_layers)
        )
        self.norm = GemmaRMSNorm(config.hidden_size, config.rms_norm_eps)

    def _make_rotary(self) -> RotaryEmbedding:
        config = self.config
        inv_freq = inv_frequencies(config.head_dim, config.rope_theta, config.rope_scaling)
        return RotaryEmbedding(inv_freq, config.context_length)

    def _make_local_rotary(self) -> RotaryEmbedding | None:
        theta = self.gemma.local_rope_theta
        if theta is None:
            return None
        return RotaryEmbedding(
            inv_frequencies(self.config.head_dim, theta, None), self.config.context_length
        )

    def reset_rotary(self, device: torch.device | str) -> None:
        super().reset_rotary(device)
        local = self._make_local_rotary()
        self.local_rotary = local.to(device) if local is not None else None

    @torch.inference_mode()
    def forward(self, input_ids, positions, kv_cache: KVCache, meta: AttentionMetadata):
        x = self.embed_tokens(input_ids)
        x = x * torch.tensor(self.config.hidden_size**0.5, dtype=torch.float32).to(x.dtype)
        rope = self.rotary.lookup(positions, meta.max_seq_len, x.dtype)
        local = self.local_rotary
        local_rope = local.lookup(positions, meta.max_seq_len, x.dtype) if local else rope
        for layer in self.layers:
            x = layer(x, local_rope if layer.sliding else rope, kv_cache, meta)
        return x

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = super().compute_logits(hidden)
        cap = self.gemma.final_softcap
        return softcap(logits, cap) if cap is not None else logits
