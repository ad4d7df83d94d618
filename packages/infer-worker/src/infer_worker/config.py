"""Hyper-parameters of a decoder, read from an HF config.json dict (GGUF metadata is first
converted to one): `ModelConfig.from_hf(raw, source)`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ModelLoadError


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
    # what the families differ in (models/<family>.py sets them from the HF config)
    architecture: str = "LlamaForCausalLM"
    hidden_act: str = "silu"
    sliding_window: int | None = None
    # per layer "full_attention" or "sliding_attention"; None: every layer windowed
    # when sliding_window is set
    layer_types: list[str] | None = None
    attention_scale: float | None = None  # None: head_dim ** -0.5
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    qk_norm: bool = False  # per-head RMSNorm of q and k before the rotary (Qwen3)
    o_proj_bias: bool = False
    mlp_bias: bool = False
    norm_plus_one: bool = False  # RMSNorm scales by (1 + weight) (Gemma)
    embed_scale: float | None = None  # embeddings times this (Gemma: sqrt(hidden_size))
    partial_rotary_factor: float = 1.0
    # sliding layers use their own rotary when set (Gemma 3: rope_local_base_freq)
    local_rope_theta: float | None = None
    local_rope_scaling: dict[str, Any] | None = None

    @classmethod
    def from_hf(cls, raw: dict[str, Any], source: str) -> ModelConfig:
        """Parse an HF config.json dict (keys as in transformers' configuration_*.py).

        The family comes from raw["architectures"][0] (models/registry.py). Raises
        ModelLoadError naming the field for anything that would change the math and is
        not implemented (architecture, hidden_act, rope scaling type, MoE/MLA/alibi/NoPE
        fields, ...). Tokenizer-side fields (bos/eos token strings, add_bos_token) are
        the caller's to fill.
        """
        from .models.registry import parse_hf_config

        return parse_hf_config(raw, source)

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    def window_for(self, layer: int) -> int | None:
        """The sliding window of layer `layer`, None for full attention."""
        if self.sliding_window is None:
            return None
        if self.layer_types is None or self.layer_types[layer] == "sliding_attention":
            return self.sliding_window
        return None

    def rope_for(self, layer: int) -> str:
        """The rotary table layer `layer` uses (a key of rope_tables())."""
        if self.local_rope_theta is not None and self.window_for(layer) is not None:
            return "local"
        return "default"

    def rope_tables(self) -> dict[str, tuple[float, dict[str, Any] | None]]:
        """Rotary tables by name: (theta, scaling)."""
        tables = {"default": (self.rope_theta, self.rope_scaling)}
        if self.local_rope_theta is not None:
            tables["local"] = (self.local_rope_theta, self.local_rope_scaling)
        return tables

    @property
    def rope_depends_on_length(self) -> bool:
        """True when a token's rotation depends on its sequence's length (dynamic NTK,
        LongRoPE), so K/V cached for one sequence are not another's."""
        kinds = {(s or {}).get("rope_type") for _theta, s in self.rope_tables().values()}
        return bool(kinds & {"dynamic", "longrope"})

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
        if self.layer_types is not None and len(self.layer_types) != self.num_layers:
            raise ModelLoadError(
                source,
                f"layer_types has {len(self.layer_types)} entries for {self.num_layers} layers",
            )
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ModelLoadError(
                source, f"sliding_window must be positive, got {self.sliding_window}"
            )
        from .models.rotary import check_scaling

        for _theta, scaling in self.rope_tables().values():
            check_scaling(scaling, source)


def config_from_hf(raw: dict[str, Any], source: str) -> ModelConfig:
    """Compatibility name of ModelConfig.from_hf."""
    return ModelConfig.from_hf(raw, source)
