"""Tiny random-weight Llama / Mistral / Qwen2 / Qwen3 models as HF directories with
SmolLM2's tokenizer, every family feature switched on (a helper module).

VARIANTS maps a name to (model_type, config changes); write_variant(path, name) writes
config.json, model.safetensors, tokenizer.json and tokenizer_config.json, and
family_models.reference_greedy gives transformers' float32 greedy tokens for it.
Windows (12) are smaller than the prompts, head_dim (24) differs from hidden / heads (16).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gguf_families import write_hf_model

from infer_worker.testing import IM_END, smollm2_tokenizer

WINDOW = 12
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-linear-bias-gelu": (
        "llama",
        {
            "head_dim": 24,
            "attention_bias": True,
            "mlp_bias": True,
            "hidden_act": "gelu",
            "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        },
    ),
    "llama3-rope": (
        "llama",
        {
            "head_dim": 24,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        },
    ),
    "llama-yarn": (
        "llama",
        {
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 32,
            }
        },
    ),
    # dynamic NTK grows the base once a sequence passes max_position_embeddings (40)
    "llama-dynamic": (
        "llama",
        {"max_position_embeddings": 40, "rope_scaling": {"rope_type": "dynamic", "factor": 4.0}},
    ),
    "mistral-window": ("mistral", {"head_dim": 24, "sliding_window": WINDOW}),
    # layers >= max_window_layers are windowed (transformers' Qwen2Config)
    "qwen2-window": (
        "qwen2",
        {"use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 3},
    ),
    "qwen3-window": (
        "qwen3",
        {
            "head_dim": 24,
            "attention_bias": True,
            "use_sliding_window": True,
            "sliding_window": WINDOW,
            "max_window_layers": 2,
        },
    ),
}


def write_variant(path: Path, name: str, seed: int = 0) -> Path:
    """The HF directory of VARIANTS[name] (weights from `seed`) with tokenizer files."""
    model_type, changes = VARIANTS[name]
    return write_tokenizer(write_hf_model(path, model_type, seed=seed, **changes))


def write_tokenizer(path: Path) -> Path:
    """SmolLM2's tokenizer.json and a tokenizer_config.json beside a config.json."""
    tokenizer, chat_template = smollm2_tokenizer()
    tokenizer.save(str(path / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|im_start|>",
        "eos_token": IM_END,
        "pad_token": IM_END,
        "add_bos_token": False,
        "chat_template": chat_template,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return path
