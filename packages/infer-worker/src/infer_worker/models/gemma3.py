"""Gemma 3 text models (Gemma3ForCausalLM): Gemma 2's layers plus per-head (1 + w) q/k
norms, 5 local : 1 global layers (sliding_window_pattern, or layer_types), local layers
rotating with rope_local_base_freq (default rope) and global ones with rope_theta and
its scaling; no attention soft-cap (transformers' Gemma 3 never applies one).

The multimodal Gemma3ForConditionalGeneration checkpoint is refused by name (see
registry.REFUSED): its text weights sit under language_model.* next to a vision tower.
"""

from __future__ import annotations

from typing import Any

from .family_configs import GEMMA3_KEYS, refuse_unknown
from .gemma2 import GemmaForCausalLM, gemma_fields
from .hf_config import HFConfig
from .registry_types import Family

LAYER_KINDS = ("sliding_attention", "full_attention")


def _rope(cfg: HFConfig) -> tuple[float, dict | None, float]:
    """(global theta, global scaling or None, local theta) as Gemma3TextConfig resolves them."""
    params = cfg.raw.get("rope_parameters")
    if params:
        if not isinstance(params, dict) or not set(params) <= set(LAYER_KINDS):
            raise cfg.refuse("rope_parameters", "Gemma 3 keys them by layer type")
        full = dict(params.get("full_attention") or {})
        local = dict(params.get("sliding_attention") or {})
    else:
        full, local = dict(cfg.raw.get("rope_scaling") or {}), {}
    full["rope_type"] = full.get("rope_type", full.pop("type", "default"))
    full.pop("type", None)
    if local.get("rope_type", local.get("type", "default")) != "default":
        raise cfg.refuse("rope_parameters", "local layers with scaled rotary are not built")
    theta = float(full.pop("rope_theta", cfg.get("rope_theta", 1_000_000.0)))
    local_theta = float(local.get("rope_theta", cfg.get("rope_local_base_freq", 10_000.0)))
    scaling = full if full["rope_type"] != "default" or len(full) > 1 else None
    return theta, scaling, local_theta


def read(cfg: HFConfig, fields: dict[str, Any]) -> dict[str, Any]:
    refuse_unknown(cfg, GEMMA3_KEYS, "Gemma 3")
    cfg.refuse_set("attn_logit_softcapping", "transformers' Gemma 3 stores it but never applies it")
    out = gemma_fields(cfg, fields, "Gemma 3", int(cfg.get("sliding_window_pattern", 6)))
    theta, scaling, local_theta = _rope(cfg)
    return dict(
        out,
        qk_norm=True,
        rope_theta=theta,
        rope_scaling=scaling,
        local_rope_theta=local_theta,
        local_rope_scaling=None,
    )


FAMILY = Family(
    name="gemma3_text",
    architectures=("Gemma3ForCausalLM",),
    read=read,
    model_class=GemmaForCausalLM,
)
