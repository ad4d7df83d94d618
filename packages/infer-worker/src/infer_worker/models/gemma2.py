"""Gemma 2 (Gemma2ForCausalLM), and the layer Gemma 3 shares, as transformers computes them.

How the family differs from Llama:
- RMSNorm multiplies by (1 + w), in float32, before casting back (norm_plus_one);
- the embedding output is multiplied by sqrt(hidden_size) in the model dtype;
- each layer: x + post_attention_norm(attn(input_norm(x))), then
  x + post_feedforward_norm(mlp(pre_feedforward_norm(x)));
- attention scale query_pre_attn_scalar ** -0.5, scores soft-capped by
  attn_logit_softcapping, "sliding_attention" layers windowed (layer 0 local,
  then alternating, unless layer_types);
- the MLP is gelu_pytorch_tanh(gate) * up; final logits soft-capped by
  final_logit_softcapping.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from .attention import AttentionFront
from .decoder import CausalLM, layer_attention
from .family_configs import GEMMA2_KEYS, gemma_activation, refuse_unknown
from .hf_config import HFConfig, layer_types
from .layers import GatedMLP, RMSNorm
from .registry_types import Family


class GemmaDecoderLayer(nn.Module):
    """Gemma's sandwich: pre and post norms around attention and around the MLP."""

    def __init__(self, config: ModelConfig, index: int) -> None:
        super().__init__()
        size, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = RMSNorm(size, eps, plus_one=True)
        self.self_attn = AttentionFront(
            index,
            size,
            config.num_heads,
            config.num_kv_heads,
            config.head_dim,
            layer_attention(config, index),
            rotary_dim=config.rotary_dim,
        )
        if config.qk_norm:  # Gemma 3: per-head (1 + w) norms of q and k
            self.self_attn.q_norm = RMSNorm(config.head_dim, eps, plus_one=True)
            self.self_attn.k_norm = RMSNorm(config.head_dim, eps, plus_one=True)
        self.post_attention_layernorm = RMSNorm(size, eps, plus_one=True)
        self.pre_feedforward_layernorm = RMSNorm(size, eps, plus_one=True)
        self.mlp = GatedMLP(size, config.intermediate_size, config.hidden_act)
        self.post_feedforward_layernorm = RMSNorm(size, eps, plus_one=True)

    def forward(self, x: torch.Tensor, step) -> torch.Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), step))
        h = self.mlp(self.pre_feedforward_layernorm(x), step)
        return x + self.post_feedforward_layernorm(h)


class GemmaForCausalLM(CausalLM):
    """CausalLM with Gemma's layers (the embedding scale and soft-caps are config fields)."""

    def make_layer(self, config: ModelConfig, index: int) -> nn.Module:
        return GemmaDecoderLayer(config, index)


def gemma_fields(cfg: HFConfig, fields: dict[str, Any], family: str, pattern: int) -> dict:
    """What Gemma 2 and 3 read alike; `pattern`: every pattern-th layer is global."""
    gemma_activation(cfg, family)
    for key in ("use_bidirectional_attention", "attention_bias"):
        cfg.refuse_set(key, f"not built for {family}")
    layers = fields["num_layers"]
    types = layer_types(cfg, layers) or [
        "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)
    ]
    window = int(cfg.get("sliding_window", 4096))
    if window <= 0:
        raise cfg.refuse("sliding_window", "must be a positive number of positions")
    return dict(
        hidden_act="gelu_pytorch_tanh",
        norm_plus_one=True,
        embed_scale=fields["hidden_size"] ** 0.5,
        attention_scale=float(cfg.get("query_pre_attn_scalar", 256)) ** -0.5,
        sliding_window=window,
        layer_types=types,
        final_logit_softcapping=cfg.raw.get("final_logit_softcapping"),
    )


def read(cfg: HFConfig, fields: dict[str, Any]) -> dict[str, Any]:
    refuse_unknown(cfg, GEMMA2_KEYS, "Gemma 2")
    out = gemma_fields(cfg, fields, "Gemma 2", 2)
    raw = {"final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0, **cfg.raw}
    out["final_logit_softcapping"] = raw["final_logit_softcapping"]
    out["attn_logit_softcapping"] = raw["attn_logit_softcapping"]
    return out


FAMILY = Family(
    name="gemma2", architectures=("Gemma2ForCausalLM",), read=read, model_class=GemmaForCausalLM
)
