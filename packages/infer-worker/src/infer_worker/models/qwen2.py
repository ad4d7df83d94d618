"""Qwen2 / Qwen2.5: q/k/v biases (o_proj none); with use_sliding_window, layers
i >= max_window_layers are windowed (as transformers' Qwen2Config), unless the
config lists layer_types itself."""

from __future__ import annotations

from typing import Any

from .hf_config import HFConfig, layer_types
from .registry_types import Family


def windows(cfg: HFConfig, fields: dict[str, Any]) -> dict[str, Any]:
    """sliding_window and layer_types as Qwen2Config / Qwen3Config derive them."""
    layers = fields["num_layers"]
    window = cfg.get("sliding_window", 4096) if cfg.get("use_sliding_window", False) else None
    types = layer_types(cfg, layers)
    if types is None:
        first = int(cfg.get("max_window_layers", 28))
        types = [
            "sliding_attention" if window is not None and i >= first else "full_attention"
            for i in range(layers)
        ]
    return dict(sliding_window=None if window is None else int(window), layer_types=types)


def read(cfg: HFConfig, fields: dict[str, Any]) -> dict[str, Any]:
    return dict(attention_bias=True, **windows(cfg, fields))


FAMILY = Family(name="qwen2", architectures=("Qwen2ForCausalLM",), read=read)
