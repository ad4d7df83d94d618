"""Hyper-parameters of a Llama-family decoder, read from HF config.json or GGUF metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ModelLoadError

SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
)
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "freq_factors")  # last: GGUF rope_freqs


@dataclass
class ModelConfig:
    """Everything the model, the cache and the scheduler need to know.

    Invariants: hidden_size == num_heads * head_dim is NOT required (head_dim
    is explicit); num_heads % num_kv_heads == 0; eos_token_ids lists every id
    that ends generation.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    context_length: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    bos_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)
    bos_token: str | None = None
    eos_token: str | None = None
    add_bos_token: bool = False
    # "llama" (Llama, Mistral, Qwen2, SmolLM) or a family of models/families.py, whose
    # parsed numbers (GemmaSettings, PhiSettings) are family_settings
    family: str = "llama"
    family_settings: Any = None

    def validate(self, source: str) -> None:
        """Raise ModelLoadError when the numbers cannot describe a working model."""
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads"):
            if getattr(self, name) <= 0:
                raise ModelLoadError(source, f"{name} must be positive, got {getattr(self, name)}")
        if self.num_kv_heads <= 0 or self.num_heads % self.num_kv_heads:
            raise ModelLoadError(
                source,
                f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}",
            )
        if self.head_dim <= 0 or self.head_dim % 2:
            raise ModelLoadError(
                source, f"head_dim must be a positive even number, got {self.head_dim}"
            )
        scaling = self.rope_scaling or {}
        rope_type = scaling.get("rope_type", "default")
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise ModelLoadError(source, f"unsupported rope_scaling type {rope_type!r}")
        if rope_type in ("linear", "llama3"):
            factor = scaling.get("factor")
            if not isinstance(factor, int | float) or factor <= 0:
                raise ModelLoadError(
                    source, f"rope_scaling {rope_type!r} needs a positive 'factor', got {factor!r}"
                )


def _rope_from_hf(raw: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(theta, scaling) from transformers 4 (rope_theta/rope_scaling) or 5 (rope_parameters)."""
    params = raw.get("rope_parameters")
    if isinstance(params, dict) and params:
        theta = float(params.get("rope_theta", raw.get("rope_theta", 10000.0)))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = float(raw.get("rope_theta", 10000.0))
        scaling = dict(raw.get("rope_scaling") or {})
    if scaling:
        scaling["rope_type"] = scaling.get("rope_type", scaling.get("type", "default"))
        scaling.pop("type", None)
        if scaling["rope_type"] == "default" and len(scaling) == 1:
            scaling = {}
    return theta, scaling or None


def _int_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [int(v) for v in value]
    return [int(value)]


def config_from_hf(raw: dict[str, Any], source: str) -> ModelConfig:
    """Build a ModelConfig from a parsed config.json; unsupported models raise ModelLoadError."""
    from .models.families import family_config, family_of

    archs = raw.get("architectures") or []
    model_type = raw.get("model_type", "")
    family = family_of(raw, source)
    if (
        family is None
        and not any(a in SUPPORTED_ARCHITECTURES for a in archs)
        and model_type
        not in (
            "llama",
            "mistral",
            "qwen2",
        )
    ):
        raise ModelLoadError(
            source,
            f"unsupported architecture {archs or model_type!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}",
        )
    try:
        hidden = int(raw["hidden_size"])
        heads = int(raw["num_attention_heads"])
        theta, scaling = _rope_from_hf(raw)
        eos = _int_list(raw.get("eos_token_id"))
        config = ModelConfig(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(raw["intermediate_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(raw.get("num_key_value_heads") or heads),
            head_dim=int(raw.get("head_dim") or hidden // heads),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_scaling=scaling,
            context_length=int(raw.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            attention_bias=model_type == "qwen2" or bool(raw.get("attention_bias", False)),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_ids=eos,
        )
    except KeyError as exc:
        raise ModelLoadError(source, f"config.json lacks the key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(source, f"config.json has a malformed value: {exc}") from None
    if family is not None:
        try:
            family_config(family, raw, config, source)
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(source, f"config.json has a malformed value: {exc}") from None
    config.validate(source)
    return config
