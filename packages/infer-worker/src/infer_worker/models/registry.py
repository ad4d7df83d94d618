"""HF architectures[0] -> family module, and the one HF config parser.

To add a family: write models/<family>.py with a FAMILY (see registry_types.Family)
and list it in FAMILIES below.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import ModelLoadError
from . import llama, mistral, qwen2, qwen3
from .decoder import CausalLM
from .hf_config import HFConfig, _int_list, common_fields, rope_from_hf
from .registry_types import Family

FAMILIES: tuple[Family, ...] = (llama.FAMILY, mistral.FAMILY, qwen2.FAMILY, qwen3.FAMILY)
ARCHITECTURES: dict[str, Family] = {a: f for f in FAMILIES for a in f.architectures}
# configs without "architectures" name the family by model_type
_BY_MODEL_TYPE = {f.name: [f.architectures[0]] for f in FAMILIES}


def family_for(architecture: str, source: str = "config") -> Family:
    family = ARCHITECTURES.get(architecture)
    if family is None:
        raise ModelLoadError(
            source,
            f"unsupported architecture: architectures[0]={architecture!r} "
            f"(supported: {', '.join(sorted(ARCHITECTURES))})",
        )
    return family


def parse_hf_config(raw: dict[str, Any], source: str) -> ModelConfig:
    """ModelConfig from an HF config dict (see ModelConfig.from_hf)."""
    from .families import family_of

    if family_of(raw, source) is not None:  # Gemma 2/3, Phi-3: families.py (model.py layers)
        return _parse_legacy_family(raw, source)
    archs = raw.get("architectures") or _BY_MODEL_TYPE.get(raw.get("model_type"))
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise ModelLoadError(source, f"architectures={archs!r}: expected a list naming the model")
    family = family_for(archs[0], source)
    cfg = HFConfig(raw, source)
    try:
        fields = common_fields(cfg)
        fields.update(family.read(cfg, fields))
        config = ModelConfig(architecture=archs[0], **fields)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(source, f"config has a malformed value: {exc}") from None
    config.validate(source)
    return config


def build_model(config: ModelConfig) -> CausalLM:
    """The model of config.architecture with uninitialised weights."""
    if config.family != "llama":
        from .families import build_model as build_legacy

        return build_legacy(config)
    return family_for(config.architecture).model_class(config)


def _parse_legacy_family(raw: dict[str, Any], source: str) -> ModelConfig:
    """Common numbers read as before the registry, then families.family_config."""
    from .families import family_config, family_of

    family = family_of(raw, source)
    cfg = HFConfig(raw, source)
    try:
        hidden = int(cfg.require("hidden_size"))
        heads = int(cfg.require("num_attention_heads"))
        config = ModelConfig(
            vocab_size=int(cfg.require("vocab_size")),
            hidden_size=hidden,
            intermediate_size=int(cfg.require("intermediate_size")),
            num_layers=int(cfg.require("num_hidden_layers")),
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads", heads)),
            head_dim=int(cfg.get("head_dim", hidden // heads)),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            context_length=int(cfg.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=_int_list(cfg.get("eos_token_id")),
            architecture=(raw.get("architectures") or [family])[0],
        )
        if family != "gemma3":
            config.rope_theta, config.rope_scaling = _legacy_rope(cfg)
        family_config(family, raw, config, source)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(source, f"config has a malformed value: {exc}") from None
    config.validate(source)
    return config


def _legacy_rope(cfg: HFConfig) -> tuple[float, dict[str, Any] | None]:
    """rope_from_hf without its partial-rotary refusal (Phi-3 reads that itself)."""
    raw = dict(cfg.raw)
    for key in ("rope_parameters", "rope_scaling"):
        if isinstance(raw.get(key), dict):
            raw[key] = {k: v for k, v in raw[key].items() if k != "partial_rotary_factor"}
    return rope_from_hf(HFConfig(raw, cfg.source))
