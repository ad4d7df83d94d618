"""GGUF metadata -> a Hugging Face config.json-style dict (transformers' key names).

All architecture math lives on the HF side: this module only translates llama.cpp's
keys, filling in what llama.cpp hard-codes per architecture (Gemma's query scale,
local rope base, sliding-window pattern). Every `{arch}.*` key is either mapped,
known not to change the math, or a ModelLoadError naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .errors import ModelLoadError

HF_ARCHITECTURES = {
    "llama": ("llama", "LlamaForCausalLM"),
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM"),
    "gemma2": ("gemma2", "Gemma2ForCausalLM"),
    "gemma3": ("gemma3_text", "Gemma3ForCausalLM"),
    "phi3": ("phi3", "Phi3ForCausalLM"),
}
_COMMON = {
    "context_length": "max_position_embeddings",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "block_count": "num_hidden_layers",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "rope.freq_base": "rope_theta",
    "vocab_size": "vocab_size",
}
_EXTRA = {
    "gemma2": {
        "attention.sliding_window": "sliding_window",
        "attn_logit_softcapping": "attn_logit_softcapping",
        "final_logit_softcapping": "final_logit_softcapping",
    },
    "gemma3": {
        "attention.sliding_window": "sliding_window",
        "rope.freq_base_swa": "rope_local_base_freq",
    },
    "phi3": {"attention.sliding_window": "sliding_window"},
    # llama.cpp's converter writes no window for Mistral (llama arch) and llama.cpp ignores
    # one; a file that states it gets the window transformers' Mistral applies
    "llama": {"attention.sliding_window": "sliding_window"},
}
# read by the code below, or informational only (no effect on the math)
_HANDLED = {
    "attention.key_length",
    "attention.value_length",
    "rope.dimension_count",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scaling.original_context_length",
    "rope.scaling.attn_factor",
    "rope.scaling.yarn_beta_fast",
    "rope.scaling.yarn_beta_slow",
    "rope.scaling.finetuned",
    "attention.sliding_window_pattern",
}
# the models llama.cpp calls 27B, whose queries are scaled by hidden/heads, not head_dim
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}
GEMMA3_SLIDING_PATTERN = 6


class _Meta:
    def __init__(self, meta: dict[str, Any], arch: str, source: str) -> None:
        self.meta, self.arch, self.source = meta, arch, source

    def get(self, key: str, default: Any = ...) -> Any:
        full = f"{self.arch}.{key}"
        if full in self.meta:
            return self.meta[full]
        if default is ...:
            raise ModelLoadError(self.source, f"GGUF metadata lacks {full!r}")
        return default

    def refuse(self, key: str, why: str) -> ModelLoadError:
        value = self.get(key, None)
        return ModelLoadError(self.source, f"GGUF metadata {self.arch}.{key}={value!r}: {why}")


def _check_keys(m: _Meta) -> None:
    known = set(_COMMON) | set(_EXTRA.get(m.arch, {})) | _HANDLED
    for full in m.meta:
        if full.startswith(f"{m.arch}.") and full[len(m.arch) + 1 :] not in known:
            raise ModelLoadError(
                m.source, f"GGUF metadata key {full!r} is not supported (it would change the math)"
            )
    if int(m.meta.get("split.count", 1)) > 1:
        raise ModelLoadError(m.source, "split GGUF files (split.count > 1) are not supported")


def _rope_scaling(m: _Meta) -> dict[str, Any] | None:
    kind = m.get("rope.scaling.type", "none")
    if kind == "none":
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(m.get("rope.scaling.factor"))}
    if kind == "yarn":
        scaling: dict[str, Any] = {
            "rope_type": "yarn",
            "factor": float(m.get("rope.scaling.factor")),
            "original_max_position_embeddings": int(m.get("rope.scaling.original_context_length")),
        }
        for key, name in (("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow")):
            if m.get(f"rope.scaling.{key}", None) is not None:
                scaling[name] = float(m.get(f"rope.scaling.{key}"))
        if m.get("rope.scaling.attn_factor", None) is not None:
            scaling["attention_factor"] = float(m.get("rope.scaling.attn_factor"))
        return scaling
    raise m.refuse("rope.scaling.type", "rope scaling type not supported")


def _head_dim(m: _Meta, hidden: int, heads: int) -> int:
    key = int(m.get("attention.key_length", hidden // heads))
    value = int(m.get("attention.value_length", key))
    if value != key:
        raise m.refuse("attention.value_length", f"differs from key_length {key}")
    return key


def hf_config_from_gguf(
    meta: dict[str, Any],
    tensor_names: Sequence[str],
    source: str,
    tensor_values: Callable[[str], list[float]],
) -> dict[str, Any]:
    """The config.json dict transformers would hold for this GGUF; `tensor_values(name)`
    reads a small metadata-like tensor (rope_freqs, rope_factors_*)."""
    arch = str(meta.get("general.architecture"))
    if arch not in HF_ARCHITECTURES:
        raise ModelLoadError(
            source,
            f"unsupported GGUF architecture {arch!r} (supported: {', '.join(HF_ARCHITECTURES)})",
        )
    m = _Meta(meta, arch, source)
    _check_keys(m)
    model_type, hf_arch = HF_ARCHITECTURES[arch]
    config: dict[str, Any] = {"model_type": model_type, "architectures": [hf_arch]}
    for key, name in (_COMMON | _EXTRA.get(arch, {})).items():
        if m.get(key, None) is not None:
            config[name] = m.get(key)
    kv = config.get("num_key_value_heads")
    if isinstance(kv, list):
        if len(set(kv)) != 1:
            raise m.refuse("attention.head_count_kv", "per-layer kv head counts differ")
        config["num_key_value_heads"] = kv[0]
    hidden, heads = int(m.get("embedding_length")), int(m.get("attention.head_count"))
    head_dim = _head_dim(m, hidden, heads)
    config["head_dim"] = head_dim
    rotary = int(m.get("rope.dimension_count", head_dim))
    if rotary != head_dim:
        if arch != "phi3":
            raise m.refuse("rope.dimension_count", f"partial rotary (head_dim {head_dim})")
        config["partial_rotary_factor"] = rotary / head_dim
    config["tie_word_embeddings"] = "output.weight" not in tensor_names
    names = set(tensor_names)
    if arch == "llama":
        config["attention_bias"] = "blk.0.attn_q.bias" in names
    if arch == "qwen2" and "blk.0.attn_q.bias" not in names:
        raise ModelLoadError(source, "a qwen2 GGUF must have q/k/v biases (blk.0.attn_q.bias)")
    scaling = _rope_scaling(m)
    if "rope_freqs.weight" in names:
        if scaling is not None:
            raise m.refuse("rope.scaling.type", "together with a rope_freqs tensor")
        factors = tensor_values("rope_freqs.weight")
        if len(factors) != rotary // 2:
            raise ModelLoadError(
                source, f"rope_freqs has {len(factors)} entries, expected {rotary // 2}"
            )
        scaling = {"rope_type": "freq_factors", "factors": factors}
    if arch == "phi3":
        scaling = _phi3_longrope(m, names, scaling, tensor_values)
    if arch in ("llama", "phi3"):
        _window(m, config)
    if scaling is not None:
        config["rope_scaling"] = scaling
    if arch in ("gemma2", "gemma3"):
        _gemma(m, config, hidden, heads, head_dim)
    for key, name in (
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("padding", "pad_token_id"),
    ):
        if meta.get(f"tokenizer.ggml.{key}_token_id") is not None:
            config[name] = int(meta[f"tokenizer.ggml.{key}_token_id"])
    return config


def _window(m: _Meta, config: dict[str, Any]) -> None:
    """llama/phi3 `attention.sliding_window`: 0 is no window (the converter writes 0 for
    Phi-4); a llama file with a window is transformers' MistralForCausalLM (no biases)."""
    window = config.pop("sliding_window", None)
    if not window:
        return
    config["sliding_window"] = int(window)
    if m.arch == "llama":
        if config.pop("attention_bias"):
            raise m.refuse("attention.sliding_window", "with q/k/v biases (Mistral has none)")
        config["model_type"], config["architectures"] = "mistral", ["MistralForCausalLM"]


def _phi3_longrope(m: _Meta, names: set[str], scaling, tensor_values) -> dict[str, Any] | None:
    """Phi-3 "longrope"/"su": the factors are tensors, the attention factor a key."""
    pair = {"rope_factors_long.weight", "rope_factors_short.weight"}
    if not pair & names:
        return scaling
    if not pair <= names or scaling is not None:
        raise ModelLoadError(m.source, "phi3 rope factors need both long and short tensors alone")
    out = {
        "rope_type": "longrope",
        "long_factor": tensor_values("rope_factors_long.weight"),
        "short_factor": tensor_values("rope_factors_short.weight"),
    }
    if m.get("rope.scaling.attn_factor", None) is not None:
        out["attention_factor"] = float(m.get("rope.scaling.attn_factor"))
    original = m.get("rope.scaling.original_context_length", None)
    if original is None:
        raise ModelLoadError(m.source, "phi3 longrope needs rope.scaling.original_context_length")
    out["original_max_position_embeddings"] = int(original)
    return out


def _gemma(m: _Meta, config: dict[str, Any], hidden: int, heads: int, head_dim: int) -> None:
    """What llama.cpp hard-codes for Gemma 2/3 and transformers keeps in the config."""
    layers = int(config["num_hidden_layers"])
    big = layers == _GEMMA_27B_LAYERS[m.arch]
    config["query_pre_attn_scalar"] = hidden // heads if big else head_dim
    config["hidden_activation"] = "gelu_pytorch_tanh"
    if m.arch == "gemma2":
        pattern = 2  # llama.cpp's defaults when the keys are absent:
        config.setdefault("attn_logit_softcapping", 50.0)
        config.setdefault("final_logit_softcapping", 30.0)
    else:
        pattern = int(m.get("attention.sliding_window_pattern", GEMMA3_SLIDING_PATTERN))
        config.setdefault("rope_local_base_freq", 10000.0)
        config["final_logit_softcapping"] = None
        config["attn_logit_softcapping"] = None
    if m.get("attention.sliding_window_pattern", None) is not None and m.arch == "gemma2":
        raise m.refuse("attention.sliding_window_pattern", "gemma2 alternates layers")
    config["layer_types"] = [
        "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)
    ]
