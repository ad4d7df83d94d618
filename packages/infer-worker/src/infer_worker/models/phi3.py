"""Phi-3 / Phi-3.5-mini / Phi-4-mini (and Phi-4) (Phi3ForCausalLM), as transformers computes them.

How the family differs from Llama:
- the checkpoint stores fused qkv_proj ([q; k; v] rows) and gate_up_proj ([gate; up]),
  the layout the shared layers use (weights.py copies them as they are);
- rotary covers the first head_dim * partial_rotary_factor dims of each head;
- `longrope` (`su` in older configs): two factor sets chosen per sequence by its own
  length, cos/sin times an attention factor (longrope.py; the model runner feeds
  position + rotary_row_offset(length), the scheduler recomputes a sequence that
  crosses the switch length);
- sliding_window, when set, windows every layer.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from .decoder import CausalLM
from .family_configs import PHI3_KEYS, refuse_unknown
from .hf_config import HFConfig
from .longrope import LongRopeRotary, check_longrope
from .registry_types import Family


class Phi3ForCausalLM(CausalLM):
    """CausalLM whose positions are LongRoPE table rows when the config has longrope."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if isinstance(self.rotary, LongRopeRotary):
            self.rotary_row_offset = self._row_offset

    def _row_offset(self, total_tokens: int) -> int:
        """Row offset for a sequence holding total_tokens tokens after this step."""
        return self.rotary.row_offset(total_tokens)


def read(cfg: HFConfig, fields: dict[str, Any]) -> dict[str, Any]:
    refuse_unknown(cfg, PHI3_KEYS, "Phi-3")
    cfg.refuse_set("attention_bias", "Phi-3 projections have no biases")
    if cfg.get("hidden_act", "silu") != "silu":
        raise cfg.refuse("hidden_act", "Phi-3 is built with silu")
    raw = cfg.raw
    params = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    rope_type = params.pop("rope_type", params.pop("type", "default"))
    params.pop("rope_theta", None)
    partial = float(params.pop("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0)))
    rotary_dim = int(fields["head_dim"] * partial)
    if rotary_dim <= 0 or rotary_dim % 2:
        raise cfg.refuse("partial_rotary_factor", f"gives an odd rotary dim {rotary_dim}")
    scaling = None
    if rope_type in ("su", "longrope"):
        original = raw.get("original_max_position_embeddings")
        if original is not None:  # transformers prefers the top-level value
            params["original_max_position_embeddings"] = original
        scaling = {"rope_type": "longrope", **params}
        check_longrope(scaling, rotary_dim, cfg.source)
    elif rope_type != "default" or params:
        raise cfg.refuse(
            "rope_scaling", f"type {rope_type!r} is not built for Phi-3 (longrope and su are)"
        )
    window = cfg.get("sliding_window")
    return dict(
        partial_rotary_factor=partial,
        rope_scaling=scaling,
        sliding_window=None if window is None else int(window),
        layer_types=None,
    )


FAMILY = Family(
    name="phi3",
    architectures=("Phi3ForCausalLM",),
    read=read,
    model_class=Phi3ForCausalLM,
    partial_rotary=True,
)
