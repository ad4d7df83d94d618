"""Reading an HF config.json dict: the fields every family shares, and what is refused.

A family module (llama.py, ...) reads its own differences with the same
HFConfig; parse_hf_config in registry.py puts both together. Every refusal is
a ModelLoadError whose message starts with the field's name.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelLoadError
from .layers import ACTIVATIONS

# fields of other architectures that change the math; refused when set (not null/0/False)
UNBUILT_FIELDS = {
    "num_experts": "mixture-of-experts layers",
    "num_local_experts": "mixture-of-experts layers",
    "n_routed_experts": "mixture-of-experts layers",
    "moe_intermediate_size": "mixture-of-experts layers",
    "num_experts_per_tok": "mixture-of-experts layers",
    "kv_lora_rank": "multi-head latent attention",
    "q_lora_rank": "multi-head latent attention",
    "alibi": "ALiBi position biases",
    "use_alibi": "ALiBi position biases",
    "no_rope_layers": "layers without rotary embeddings (NoPE)",
    "no_rope_layer_interval": "layers without rotary embeddings (NoPE)",
    "nope_layer_interval": "layers without rotary embeddings (NoPE)",
    "attention_chunk_size": "chunked attention",
    "use_qk_norm": "q/k norm of this architecture",
    "residual_multiplier": "scaled residuals",
    "embedding_multiplier": "scaled embeddings",
    "attention_multiplier": "a custom attention scale",
    "logits_scaling": "scaled logits",
    "rope_interleaved": "interleaved rotary layout",
    "parallel_attn": "parallel attention and MLP blocks",
}
LAYER_TYPES = ("full_attention", "sliding_attention")


class HFConfig:
    """An HF config dict being read; `source` names it in every error."""

    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def get(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(key)
        return default if value is None else value

    def require(self, key: str) -> Any:
        if self.raw.get(key) is None:
            raise ModelLoadError(self.source, f"config lacks the key {key!r}")
        return self.raw[key]

    def refuse(self, key: str, why: str) -> ModelLoadError:
        """The error for field `key`, whose value is not supported because `why`."""
        return ModelLoadError(self.source, f"{key}={self.raw.get(key)!r} is not supported: {why}")

    def refuse_set(self, key: str, why: str) -> None:
        """Raise refuse(key) when the field is present and set (not null/0/False/empty)."""
        if self.raw.get(key) not in (None, 0, False, [], {}, ""):
            raise self.refuse(key, why)


def rope_from_hf(cfg: HFConfig, partial_ok: bool = False) -> tuple[float, dict[str, Any] | None]:
    """(theta, scaling) from transformers 4 (rope_theta/rope_scaling) or 5 (rope_parameters).

    scaling is None for plain rotary; otherwise it has "rope_type" and the type's keys,
    with original_max_position_embeddings filled as transformers fills it.
    """
    raw = cfg.raw
    params = raw.get("rope_parameters")
    if isinstance(params, dict) and params:
        theta = float(params.get("rope_theta", raw.get("rope_theta", 10000.0)))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = float(raw.get("rope_theta") or 10000.0)
        scaling = dict(raw.get("rope_scaling") or {})
    if scaling:
        scaling["rope_type"] = scaling.get("rope_type", scaling.get("type", "default"))
        scaling.pop("type", None)
        if scaling.get("partial_rotary_factor", 1.0) != 1.0 and not partial_ok:
            scaling.pop("partial_rotary_factor")
            raise ModelLoadError(
                cfg.source, "rope_parameters.partial_rotary_factor is not supported here"
            )
        scaling.pop("partial_rotary_factor", None)
        if scaling["rope_type"] in ("llama3", "yarn", "longrope"):
            if raw.get("original_max_position_embeddings"):
                scaling["original_max_position_embeddings"] = raw[
                    "original_max_position_embeddings"
                ]
            scaling.setdefault(
                "original_max_position_embeddings", raw.get("max_position_embeddings", 2048)
            )
        if scaling["rope_type"] == "dynamic":  # the length past which the base grows
            scaling["max_position_embeddings"] = int(raw.get("max_position_embeddings") or 2048)
        if scaling["rope_type"] == "default" and len(scaling) == 1:
            scaling = {}
    return theta, scaling or None


def _int_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [int(v) for v in value]
    return [int(value)]


def common_fields(cfg: HFConfig, partial_ok: bool = False) -> dict[str, Any]:
    """ModelConfig keyword arguments every Llama-like family reads the same way
    (partial_ok: the family reads partial_rotary_factor itself)."""
    for key, why in UNBUILT_FIELDS.items():
        cfg.refuse_set(key, f"{why} are not implemented")
    act = cfg.get("hidden_act", cfg.get("hidden_activation", "silu"))
    if act not in ACTIVATIONS:
        raise cfg.refuse("hidden_act", f"built activations are {', '.join(ACTIVATIONS)}")
    if cfg.get("partial_rotary_factor", 1.0) != 1.0 and not partial_ok:
        raise cfg.refuse("partial_rotary_factor", "this family rotates whole heads")
    hidden = int(cfg.require("hidden_size"))
    heads = int(cfg.require("num_attention_heads"))
    theta, scaling = rope_from_hf(cfg, partial_ok)
    context = int(cfg.get("max_position_embeddings", 2048))
    if scaling and scaling["rope_type"] == "dynamic":  # made to run past the trained length
        context = int(context * float(scaling.get("factor") or 1.0))
    return dict(
        vocab_size=int(cfg.require("vocab_size")),
        hidden_size=hidden,
        intermediate_size=int(cfg.require("intermediate_size")),
        num_layers=int(cfg.require("num_hidden_layers")),
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads", heads)),
        head_dim=int(cfg.get("head_dim", hidden // heads)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        context_length=context,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_ids=_int_list(cfg.get("eos_token_id")),
        hidden_act=act,
    )


def layer_types(cfg: HFConfig, num_layers: int) -> list[str] | None:
    """The config's own layer_types (checked), or None."""
    types = cfg.get("layer_types")
    if types is None:
        return None
    if not isinstance(types, list) or len(types) != num_layers:
        raise cfg.refuse("layer_types", f"expected a list of {num_layers} layer types")
    for t in types:
        if t not in LAYER_TYPES:
            raise cfg.refuse("layer_types", f"layer type {t!r} is not built")
    return list(types)
