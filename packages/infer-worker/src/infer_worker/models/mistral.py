"""Mistral 7B v0.1 (sliding_window 4096 on every layer), later versions (null) and Nemo
(head_dim 128 != hidden / heads): Llama without biases, plus the window."""

from __future__ import annotations

from typing import Any

from .hf_config import HFConfig
from .registry_types import Family


def read(cfg: HFConfig, fields: dict[str, Any]) -> dict[str, Any]:
    if cfg.get("layer_types") is not None:
        raise cfg.refuse("layer_types", "MistralForCausalLM windows every layer alike")
    window = cfg.get("sliding_window")
    return dict(sliding_window=None if window is None else int(window))


FAMILY = Family(name="mistral", architectures=("MistralForCausalLM",), read=read)
