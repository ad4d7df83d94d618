"""config.json fields of Gemma 2, Gemma 3 (text) and Phi-3, read as transformers reads them.

Each family lists every key it knows. A key outside the list, or a known key with a
value whose math is not built, raises ModelLoadError naming it: a config either loads
and computes what transformers computes, or is refused.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..attention import paged_attention
from ..errors import ModelLoadError
from .gemma2 import GemmaSettings
from .phi3 import PhiSettings

# keys that do not change inference (bookkeeping, training-only, generation defaults)
NO_MATH = frozenset(
    {
        "architectures",
        "model_type",
        "torch_dtype",
        "dtype",
        "transformers_version",
        "_name_or_path",
        "initializer_range",
        "use_cache",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "attention_dropout",
        "cache_implementation",  # generate's cache class; the math is the same
    }
)
# read by the common ModelConfig fields
COMMON = frozenset(
    {
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "max_position_embeddings",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "rope_parameters",
    }
)
GEMMA2 = COMMON | {
    "hidden_activation",
    "hidden_act",
    "query_pre_attn_scalar",
    "sliding_window",
    "layer_types",
    "final_logit_softcapping",
    "attn_logit_softcapping",
    "use_bidirectional_attention",
    "attention_bias",
}
GEMMA3 = GEMMA2 | {"rope_local_base_freq", "sliding_window_pattern"}
PHI3 = COMMON | {
    "hidden_act",
    "original_max_position_embeddings",
    "partial_rotary_factor",
    "sliding_window",
    "resid_pdrop",
    "embd_pdrop",
    "attention_bias",
}
LAYER_TYPES = ("sliding_attention", "full_attention")


def _attention_has(feature: str) -> bool:
    """Whether paged attention takes `feature` (window, softcap) as a keyword."""
    return feature in inspect.signature(paged_attention).parameters


def _check_window(window: int | None, context: int, source: str, family: str) -> int | None:
    """The window to apply (None when it never cuts: every position is below context)."""
    if window is None or window >= context:
        return None
    if not _attention_has("window"):
        raise ModelLoadError(
            source,
            f"{family} sliding_window {window} (below max_position_embeddings {context}) "
            "needs windowed attention, which is not built yet",
        )
    return window


def _check_softcap(cap: float | None, source: str, family: str) -> float | None:
    if cap is not None and not _attention_has("softcap"):
        raise ModelLoadError(
            source,
            f"{family} attn_logit_softcapping {cap} needs soft-capped attention, not built yet",
        )
    return cap


def refuse_unknown(raw: dict[str, Any], known: frozenset[str], source: str, family: str) -> None:
    """Raise ModelLoadError naming the first key neither known nor free of math."""
    for key in raw:
        if key not in known and key not in NO_MATH:
            raise ModelLoadError(source, f"{family} config field {key!r} is not supported")


def _falsy(raw: dict[str, Any], key: str, source: str, family: str) -> None:
    if raw.get(key):
        raise ModelLoadError(source, f"{family} config field {key!r}={raw[key]!r} is not supported")


def _optional_float(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    return None if value is None else float(value)


def _gemma_activation(raw: dict[str, Any], source: str, family: str) -> None:
    act = raw.get("hidden_activation") or "gelu_pytorch_tanh"
    if act != "gelu_pytorch_tanh":
        raise ModelLoadError(source, f"{family} hidden_activation {act!r} is not supported")
    # transformers reads only hidden_activation; a different hidden_act would be ignored there
    if raw.get("hidden_act") not in (None, act):
        raise ModelLoadError(
            source, f"{family} hidden_act {raw['hidden_act']!r} contradicts hidden_activation"
        )


def _layer_types(raw: dict[str, Any], layers: int, pattern: int, source: str) -> list[bool]:
    types = raw.get("layer_types")
    if types is None:
        return [bool((i + 1) % pattern) for i in range(layers)]
    if len(types) != layers or any(t not in LAYER_TYPES for t in types):
        raise ModelLoadError(source, f"layer_types {types!r} is not {layers} of {LAYER_TYPES}")
    return [t == "sliding_attention" for t in types]


def _gemma_common(
    raw: dict[str, Any], sliding: list[bool], context: int, source: str, family: str
) -> dict:
    _gemma_activation(raw, source, family)
    _falsy(raw, "use_bidirectional_attention", source, family)
    _falsy(raw, "attention_bias", source, family)
    window = raw.get("sliding_window", 4096)
    if any(sliding) and (not isinstance(window, int) or window <= 0):
        raise ModelLoadError(
            source, f"{family} sliding_window must be a positive int, got {window!r}"
        )
    return {
        "query_pre_attn_scalar": float(raw.get("query_pre_attn_scalar", 256)),
        "sliding_window": _check_window(window, context, source, family) if any(sliding) else None,
        "sliding": sliding,
    }


def gemma2_settings(raw: dict[str, Any], layers: int, context: int, source: str) -> GemmaSettings:
    """Gemma2Config: alternating local/global layers (layer 0 local) unless layer_types."""
    refuse_unknown(raw, GEMMA2, source, "Gemma 2")
    sliding = _layer_types(raw, layers, 2, source)
    return GemmaSettings(
        **_gemma_common(raw, sliding, context, source, "Gemma 2"),
        attn_softcap=_check_softcap(
            _optional_float({"attn_logit_softcapping": 50.0, **raw}, "attn_logit_softcapping"),
            source,
            "Gemma 2",
        ),
        final_softcap=_optional_float(
            {"final_logit_softcapping": 30.0, **raw}, "final_logit_softcapping"
        ),
    )


def gemma3_rope(raw: dict[str, Any], source: str) -> tuple[float, dict | None, float]:
    """(global theta, global scaling or None, local theta) as Gemma3TextConfig resolves them."""
    params = raw.get("rope_parameters")
    if isinstance(params, dict) and set(params) <= set(LAYER_TYPES) and params:
        full = dict(params.get("full_attention") or {})
        local = dict(params.get("sliding_attention") or {})
    else:
        full = dict(raw.get("rope_scaling") or {})
        local = {}
        if params:
            raise ModelLoadError(source, "Gemma 3 rope_parameters must be keyed by layer type")
    full["rope_type"] = full.get("rope_type", full.get("type", "default"))
    full.pop("type", None)
    local_type = local.get("rope_type", local.get("type", "default"))
    if local_type != "default":
        raise ModelLoadError(
            source, f"Gemma 3 local-layer rope type {local_type!r} is not supported"
        )
    theta = float(full.pop("rope_theta", raw.get("rope_theta", 1_000_000.0)))
    local_theta = float(local.get("rope_theta", raw.get("rope_local_base_freq", 10_000.0)))
    scaling = full if full.get("rope_type", "default") != "default" else None
    return theta, scaling, local_theta


def gemma3_settings(raw: dict[str, Any], layers: int, context: int, source: str) -> GemmaSettings:
    """Gemma3TextConfig: 5 local : 1 global (sliding_window_pattern) unless layer_types."""
    refuse_unknown(raw, GEMMA3, source, "Gemma 3")
    if raw.get("attn_logit_softcapping") is not None:  # transformers' Gemma 3 never applies it
        raise ModelLoadError(
            source, "Gemma 3 config field 'attn_logit_softcapping' is not supported"
        )
    pattern = int(raw.get("sliding_window_pattern", 6))
    sliding = _layer_types(raw, layers, pattern, source)
    _, _, local_theta = gemma3_rope(raw, source)
    return GemmaSettings(
        **_gemma_common(raw, sliding, context, source, "Gemma 3"),
        attn_softcap=None,
        final_softcap=_optional_float(raw, "final_logit_softcapping"),
        qk_norm=True,
        local_rope_theta=local_theta,
    )


def phi3_settings(raw: dict[str, Any], head_dim: int, context: int, source: str) -> PhiSettings:
    """Phi3Config: partial rotary, longrope (`su`) and an all-layer sliding window."""
    refuse_unknown(raw, PHI3, source, "Phi-3")
    _falsy(raw, "attention_bias", source, "Phi-3")
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ModelLoadError(source, f"Phi-3 hidden_act {act!r} is not supported")
    scaling = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    rope_type = scaling.pop("rope_type", scaling.pop("type", "default"))
    scaling.pop("rope_theta", None)
    partial = float(scaling.pop("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0)))
    rotary_dim = int(head_dim * partial)
    if rotary_dim <= 0 or rotary_dim % 2:
        raise ModelLoadError(
            source, f"Phi-3 partial_rotary_factor {partial} gives rotary dim {rotary_dim}"
        )
    longrope = None
    if rope_type in ("su", "longrope"):
        unknown = set(scaling) - {
            "short_factor",
            "long_factor",
            "factor",
            "attention_factor",
            "original_max_position_embeddings",
        }
        if unknown:
            raise ModelLoadError(
                source, f"Phi-3 rope_scaling field {sorted(unknown)[0]!r} is not supported"
            )
        original = raw.get(
            "original_max_position_embeddings", scaling.get("original_max_position_embeddings")
        )
        if original is None:
            raise ModelLoadError(source, "Phi-3 longrope needs original_max_position_embeddings")
        for key in ("short_factor", "long_factor"):
            factors = scaling.get(key)
            if not isinstance(factors, list) or len(factors) != rotary_dim // 2:
                raise ModelLoadError(
                    source, f"Phi-3 rope_scaling {key} must list {rotary_dim // 2} numbers"
                )
        longrope = {**scaling, "original_max_position_embeddings": int(original)}
    elif rope_type != "default" or scaling:
        raise ModelLoadError(source, f"Phi-3 rope_scaling type {rope_type!r} is not supported")
    window = raw.get("sliding_window")
    if window is not None and (not isinstance(window, int) or window <= 0):
        raise ModelLoadError(source, f"Phi-3 sliding_window must be a positive int, got {window!r}")
    window = _check_window(window, context, source, "Phi-3")
    return PhiSettings(rotary_dim=rotary_dim, sliding_window=window, longrope=longrope)
