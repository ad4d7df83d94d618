"""Gemma 2, Gemma 3 (text) and Phi-3 entries: which config.json they claim, how they are
parsed, and which model class runs them."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import ModelConfig
from ..errors import ModelLoadError
from .family_configs import gemma2_settings, gemma3_rope, gemma3_settings, phi3_settings
from .gemma2 import GemmaModel
from .phi3 import Phi3Model

# architecture -> family; the multimodal Gemma 3 checkpoint is refused by name (see docs/models.md)
ARCHITECTURES = {
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3",
    "Phi3ForCausalLM": "phi3",
}
MODEL_TYPES = {"gemma2": "gemma2", "gemma3_text": "gemma3", "phi3": "phi3"}
REFUSED = {
    "Gemma3ForConditionalGeneration": "the multimodal Gemma 3 checkpoint (vision tower and "
    "language_model.* weights) is not supported; use a text-only Gemma3ForCausalLM checkpoint",
}


def family_of(raw: dict[str, Any], source: str) -> str | None:
    """The family a config.json belongs to, None when it is not one of these."""
    for arch in raw.get("architectures") or []:
        if arch in REFUSED:
            raise ModelLoadError(source, f"architecture {arch!r}: {REFUSED[arch]}")
        if arch in ARCHITECTURES:
            return ARCHITECTURES[arch]
    if raw.get("model_type") == "gemma3":
        raise ModelLoadError(
            source, f"model_type 'gemma3': {REFUSED['Gemma3ForConditionalGeneration']}"
        )
    return MODEL_TYPES.get(raw.get("model_type", ""))


def family_config(family: str, raw: dict[str, Any], config: ModelConfig, source: str) -> None:
    """Fill config.family and config.family_settings (and Gemma 3's global rope) from raw."""
    config.family = family
    if family == "gemma2":
        config.family_settings = gemma2_settings(
            raw, config.num_layers, config.context_length, source
        )
    elif family == "gemma3":
        config.family_settings = gemma3_settings(
            raw, config.num_layers, config.context_length, source
        )
        config.rope_theta, config.rope_scaling, _ = gemma3_rope(raw, source)
    elif family == "phi3":
        config.family_settings = phi3_settings(raw, config.head_dim, config.context_length, source)
        config.rope_scaling = None  # longrope lives in the settings


def build_model(config: ModelConfig) -> nn.Module:
    """The model class of config.family with its settings (LlamaModel's interface)."""
    if config.family in ("gemma2", "gemma3"):
        return GemmaModel(config, config.family_settings)
    if config.family == "phi3":
        return Phi3Model(config, config.family_settings)
    raise ValueError(f"unknown family {config.family!r}")
