"""Llama 1/2/3/3.1/3.2/3.3 and SmolLM (LlamaForCausalLM): the layout the others change.

Differences read here: attention_bias (q/k/v/o biases) and mlp_bias. Rope
scaling (linear, dynamic, llama3, yarn) and head_dim are common fields.
"""

from __future__ import annotations

from typing import Any

from .hf_config import HFConfig
from .registry_types import Family


def read(cfg: HFConfig, fields: dict[str, Any]) -> dict[str, Any]:
    bias = bool(cfg.get("attention_bias", False))
    return dict(attention_bias=bias, o_proj_bias=bias, mlp_bias=bool(cfg.get("mlp_bias", False)))


FAMILY = Family(name="llama", architectures=("LlamaForCausalLM",), read=read)
