"""Rotary position embeddings: default, linear, dynamic NTK, Llama 3, YaRN, GGUF rope_freqs.

Frequencies are computed as transformers' modeling_rope_utils computes them
(float32). cos/sin tables hold positions 0 .. max_positions - 1 and are
multiplied by the type's attention factor (YaRN's mscale; 1 otherwise).
Dynamic NTK follows transformers' generate for one sequence, whose rotary
module recomputes the frequencies for the length L = last position + 1 of
each forward once L exceeds max_position_embeddings (below that: the default
rotary), and whose cache keeps each key as it was rotated: the prompt is one
forward (every prompt token uses L = prompt length), each decode step another
(L = position + 1). So a token at position p uses L = max(prompt length, p + 1)
however the prompt is chunked or recomputed, given meta.prompt_lens.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError
from ..metadata import AttentionMetadata

BUILT_TYPES = ("default", "linear", "dynamic", "llama3", "yarn", "freq_factors")


_NEEDS = {
    "linear": ("factor",),
    "dynamic": ("factor",),
    "llama3": ("factor", "original_max_position_embeddings"),
    "yarn": ("factor", "original_max_position_embeddings"),
    "freq_factors": ("factors",),
}


def check_scaling(scaling: dict[str, Any] | None, source: str) -> None:
    """Raise ModelLoadError for a rope scaling this module does not build or that lacks a key."""
    scaling = scaling or {}
    rope_type = scaling.get("rope_type", "default")
    if rope_type == "longrope":  # Phi-3: longrope.py; its keys are checked where it is read
        return
    if rope_type not in BUILT_TYPES:
        raise ModelLoadError(
            source,
            f"rope_scaling type {rope_type!r} is not supported (built: {', '.join(BUILT_TYPES)})",
        )
    for key in _NEEDS.get(rope_type, ()):
        value = scaling.get(key)
        if key == "factors" and isinstance(value, list) and value:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ModelLoadError(
                source, f"rope_scaling {rope_type!r} needs a positive {key!r}, got {value!r}"
            )


def _base_frequencies(dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def inv_frequencies(
    dim: int, theta: float, scaling: dict[str, Any] | None
) -> tuple[torch.Tensor, float]:
    """(float32 [dim // 2] inverse frequencies, attention factor) for rotary dim `dim`."""
    inv_freq = _base_frequencies(dim, theta)
    scaling = scaling or {}
    rope_type = scaling.get("rope_type", "default")
    if rope_type == "linear":
        return inv_freq / float(scaling["factor"]), 1.0
    if rope_type == "llama3":
        return _llama3(inv_freq, scaling), 1.0
    if rope_type == "yarn":
        return _yarn(dim, theta, scaling)
    if rope_type == "freq_factors":  # llama.cpp's rope_freqs tensor: theta_i / factor_i
        return inv_freq / torch.tensor(scaling["factors"], dtype=torch.float32), 1.0
    return inv_freq, 1.0  # default; dynamic below its original length


def _llama3(inv_freq: torch.Tensor, scaling: dict[str, Any]) -> torch.Tensor:
    factor = float(scaling["factor"])
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_len = float(scaling.get("original_max_position_embeddings", 8192))
    low_wavelen = old_len / low
    high_wavelen = old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(dim: int, theta: float, scaling: dict[str, Any]) -> tuple[torch.Tensor, float]:
    """transformers' _compute_yarn_parameters (factor, beta_fast/slow, mscale, truncate)."""
    factor = float(scaling["factor"])
    original = float(scaling["original_max_position_embeddings"])
    attention = scaling.get("attention_factor")
    mscale, mscale_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
    if attention is None:
        if mscale and mscale_all:
            attention = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all)
        else:
            attention = _yarn_mscale(factor)
    fast = scaling.get("beta_fast") or 32
    slow = scaling.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(fast), correction_dim(slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = theta ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1.0 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (
        1.0 / pos_freqs
    ) * extrapolation
    return inv_freq, float(attention)


class RotaryEmbedding(nn.Module):
    """Holds cos/sin tables (float32) of rotary dim `dim` for positions 0 .. max_positions - 1."""

    def __init__(
        self,
        dim: int,
        theta: float,
        scaling: dict[str, Any] | None,
        max_positions: int,
    ) -> None:
        super().__init__()
        scaling = scaling or {}
        self.dim = dim
        self.theta = theta
        inv_freq, self.attention_factor = inv_frequencies(dim, theta, scaling)
        self.dynamic: tuple[float, int] | None = None
        if scaling.get("rope_type") == "dynamic":
            self.dynamic = (float(scaling["factor"]), int(scaling["max_position_embeddings"]))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._build(max_positions)

    def _build(self, n: int) -> None:
        pos = torch.arange(n, dtype=torch.float32, device=self.inv_freq.device)
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_table", emb.cos() * self.attention_factor, persistent=False)
        self.register_buffer("sin_table", emb.sin() * self.attention_factor, persistent=False)
        self.max_positions = n

    def lookup(
        self, positions: torch.Tensor, meta: AttentionMetadata, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) [T, 1, dim] in dtype for the flattened tokens of meta at positions [T]."""
        if (
            self.dynamic is not None
            and max(meta.max_seq_len, meta.max_prompt_len) > self.dynamic[1]
        ):
            q_lens = (meta.query_start_loc[1:] - meta.query_start_loc[:-1]).long()
            per_seq = meta.seq_lens if meta.prompt_lens is None else meta.prompt_lens
            lengths = torch.repeat_interleave(per_seq.long(), q_lens)
            return self._dynamic(positions, torch.maximum(lengths, positions + 1), dtype)
        if meta.max_seq_len > self.max_positions:
            self._build(max(meta.max_seq_len, 2 * self.max_positions))
        return self.gather(positions, dtype)

    def gather(self, positions: torch.Tensor, dtype: torch.dtype):
        """Table rows for positions [T] (all < max_positions): traceable, no host ints."""
        cos = self.cos_table[positions].to(dtype).unsqueeze(1)
        sin = self.sin_table[positions].to(dtype).unsqueeze(1)
        return cos, sin

    def decode(self, positions: torch.Tensor, dtype: torch.dtype):
        """(cos, sin) of one decode token per sequence at positions [S] (past its prompt:
        dynamic NTK's length is position + 1): traceable."""
        if self.dynamic is not None:
            return self._dynamic(positions, positions + 1, dtype)
        return self.gather(positions, dtype)

    def _dynamic(self, positions: torch.Tensor, lengths: torch.Tensor, dtype: torch.dtype):
        """Dynamic NTK per token: the base grows with the token's sequence length."""
        factor, original = self.dynamic
        dim = self.dim
        lengths = torch.clamp(lengths, min=original).float()
        base = self.theta * ((factor * lengths / original) - (factor - 1)) ** (dim / (dim - 2))
        exponent = torch.arange(0, dim, 2, dtype=torch.int64, device=positions.device).float() / dim
        inv_freq = 1.0 / (base[:, None] ** exponent[None, :])
        freqs = positions.float()[:, None] * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype).unsqueeze(1), emb.sin().to(dtype).unsqueeze(1)


def rotary_for(config) -> nn.ModuleDict:
    """The model's rotary tables by name (config.rope_tables(): name -> (theta, scaling))."""
    tables = {}
    for name, (theta, scaling) in config.rope_tables().items():
        scaling = dict(scaling or {})
        if scaling.get("rope_type") == "dynamic":  # the trained length (set by the parser)
            scaling.setdefault("max_position_embeddings", config.context_length)
        if scaling.get("rope_type") == "longrope":
            from .longrope import LongRopeRotary

            tables[name] = LongRopeRotary(config.rotary_dim, theta, scaling, config.context_length)
            continue
        tables[name] = RotaryEmbedding(config.rotary_dim, theta, scaling, config.context_length)
    return nn.ModuleDict(tables)


def apply_rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q [T, H, D] and k [T, KVH, D] (rotate-half layout, as transformers)."""
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
