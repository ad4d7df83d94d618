"""HF architectures[0] -> family module, and the one HF config parser.

To add a family: write models/<family>.py with a FAMILY (see registry_types.Family)
and list it in FAMILIES below.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import ModelLoadError
from . import gemma2, gemma3, llama, mistral, phi3, qwen2, qwen3
from .decoder import CausalLM
from .hf_config import HFConfig, common_fields
from .registry_types import Family

FAMILIES: tuple[Family, ...] = (
    llama.FAMILY,
    mistral.FAMILY,
    qwen2.FAMILY,
    qwen3.FAMILY,
    gemma2.FAMILY,
    gemma3.FAMILY,
    phi3.FAMILY,
)
ARCHITECTURES: dict[str, Family] = {a: f for f in FAMILIES for a in f.architectures}
# configs without "architectures" name the family by model_type
_BY_MODEL_TYPE = {f.name: [f.architectures[0]] for f in FAMILIES}


# architectures refused with a reason beyond "not supported"
REFUSED = {
    "Gemma3ForConditionalGeneration": "the multimodal Gemma 3 checkpoint (a vision tower, "
    "text weights under language_model.*) is not built; use a text-only Gemma3ForCausalLM",
}


def family_for(architecture: str, source: str = "config") -> Family:
    family = ARCHITECTURES.get(architecture)
    if architecture in REFUSED:
        raise ModelLoadError(source, f"architectures={architecture!r}: {REFUSED[architecture]}")
    if family is None:
        raise ModelLoadError(
            source,
            f"unsupported architecture: architectures[0]={architecture!r} "
            f"(supported: {', '.join(sorted(ARCHITECTURES))})",
        )
    return family


def parse_hf_config(raw: dict[str, Any], source: str) -> ModelConfig:
    """ModelConfig from an HF config dict (see ModelConfig.from_hf)."""
    archs = raw.get("architectures") or _BY_MODEL_TYPE.get(raw.get("model_type"))
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise ModelLoadError(source, f"architectures={archs!r}: expected a list naming the model")
    family = family_for(archs[0], source)
    cfg = HFConfig(raw, source)
    try:
        fields = common_fields(cfg, family.partial_rotary)
        fields.update(family.read(cfg, fields))
        config = ModelConfig(architecture=archs[0], **fields)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(source, f"config has a malformed value: {exc}") from None
    config.validate(source)
    return config


def build_model(config: ModelConfig) -> CausalLM:
    """The model of config.architecture with uninitialised weights."""
    return family_for(config.architecture).model_class(config)
