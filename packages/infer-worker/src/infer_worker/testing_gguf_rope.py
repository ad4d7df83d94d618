"""Test helper: the rope scaling of an HF config as llama.cpp's converter writes it to a
GGUF file (the Llama 3 `rope_freqs` tensor, the YaRN `rope.scaling.*` keys)."""

from __future__ import annotations

from typing import Any

import numpy as np


def llama3_rope_factors(config: dict[str, Any], head_dim: int) -> np.ndarray:
    """llama.cpp's rope_freqs tensor for a "llama3" rope_scaling (per-frequency divisors)."""
    scaling = config["rope_scaling"]
    base = float(config.get("rope_theta", 10000.0))
    freqs = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)
    factor = scaling["factor"]
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    old = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * np.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def yarn_keys(scaling: dict[str, Any]) -> dict[str, Any]:
    """The rope.scaling.* keys llama.cpp's converter writes for a "yarn" rope_scaling."""
    for key in ("mscale", "mscale_all_dim", "truncate"):
        if key in scaling:
            raise ValueError(f"llama.cpp's converter drops rope_scaling.{key}")
    keys = {
        "rope.scaling.type": "yarn",
        "rope.scaling.factor": float(scaling["factor"]),
        "rope.scaling.original_context_length": int(scaling["original_max_position_embeddings"]),
    }
    for hf, gguf in (
        ("attention_factor", "attn_factor"),
        ("beta_fast", "yarn_beta_fast"),
        ("beta_slow", "yarn_beta_slow"),
    ):
        if scaling.get(hf) is not None:
            keys[f"rope.scaling.{gguf}"] = float(scaling[hf])
    return keys
