"""Qwen3 dense: per-head RMSNorm of q and k (after the projection, before the rotary),
attention_bias on q/k/v/o, windows as Qwen2."""

from __future__ import annotations

from typing import Any

from .hf_config import HFConfig
from .qwen2 import windows
from .registry_types import Family


def read(cfg: HFConfig, fields: dict[str, Any]) -> dict[str, Any]:
    bias = bool(cfg.get("attention_bias", False))
    return dict(qk_norm=True, attention_bias=bias, o_proj_bias=bias, **windows(cfg, fields))


FAMILY = Family(name="qwen3", architectures=("Qwen3ForCausalLM",), read=read)
