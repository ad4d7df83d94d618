"""LongRoPE (Phi-3 `longrope`, formerly `su`): short and long factor sets in one table.

LongRoPE scales the inverse frequencies by a
short factor set while a sequence holds at most `original_max_position_embeddings`
tokens and by a long set beyond that; cos and sin are multiplied by an attention
factor in both cases. transformers decides per forward call by the sequence's total
length (max position + 1) and, in `generate`, recomputes the whole cache with the
long factors when a sequence first grows past the threshold.

Here one table holds both sets: rows [0, switch) are the short factors at positions
0 .. switch - 1, rows [switch, switch + max_positions) the long factors at positions
0 .. max_positions - 1. The caller turns a position into a row with `row_offset`
(chosen per sequence by its own total length), so one batch mixes sequences of both
kinds; the scheduler recomputes a sequence whose K/V were written with the short
set once it needs the long one (see infer_scheduler.scheduler).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ModelLoadError
from ..metadata import AttentionMetadata

LONGROPE_KEYS = frozenset(
    {
        "rope_type",
        "short_factor",
        "long_factor",
        "factor",
        "attention_factor",
        "original_max_position_embeddings",
    }
)


def check_longrope(scaling: dict[str, Any], rotary_dim: int, source: str) -> None:
    """Raise ModelLoadError naming a longrope key that is unknown, missing or malformed."""
    for key in scaling:
        if key not in LONGROPE_KEYS:
            raise ModelLoadError(source, f"rope_scaling.{key} is not supported with longrope")
    for key in ("short_factor", "long_factor"):
        factors = scaling.get(key)
        if not isinstance(factors, list) or len(factors) != rotary_dim // 2:
            raise ModelLoadError(
                source, f"rope_scaling.{key} must list {rotary_dim // 2} numbers, got {factors!r}"
            )
    original = scaling.get("original_max_position_embeddings")
    if not isinstance(original, int) or original <= 0:
        raise ModelLoadError(
            source, f"longrope needs a positive original_max_position_embeddings, got {original!r}"
        )


def longrope_inv_freq(rotary_dim: int, theta: float, factors: list[float]) -> torch.Tensor:
    """float32 [rotary_dim // 2] inverse frequencies, computed as transformers does."""
    exponent = torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim
    return 1.0 / (torch.tensor(factors, dtype=torch.float32) * theta**exponent)


def longrope_attention_factor(
    scaling: dict[str, Any], max_positions: int, original_max_positions: int
) -> float:
    """The cos/sin multiplier: `attention_factor`, else sqrt(1 + ln(f) / ln(original))."""
    if scaling.get("attention_factor") is not None:
        return float(scaling["attention_factor"])
    factor = scaling.get("factor")
    factor = float(factor) if factor is not None else max_positions / original_max_positions
    if factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(factor) / math.log(original_max_positions))


def _table(inv_freq: torch.Tensor, n: int, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    freqs = torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * factor, emb.sin() * factor


class LongRopeRotary(torch.nn.Module):
    """float32 cos/sin rows for both factor sets; `lookup` has RotaryEmbedding's interface.

    Invariant: a short row is only asked for positions < switch, a long row for
    positions < max_positions (the engine caps sequences at the context length).
    """

    def __init__(self, dim: int, theta: float, scaling: dict[str, Any], max_positions: int) -> None:
        super().__init__()
        switch = int(scaling["original_max_position_embeddings"])
        short_inv_freq = longrope_inv_freq(dim, theta, scaling["short_factor"])
        long_inv_freq = longrope_inv_freq(dim, theta, scaling["long_factor"])
        attention_factor = longrope_attention_factor(scaling, max_positions, switch)
        self.dim = dim
        self.attention_factor = attention_factor
        self.switch = switch
        self.max_positions = switch + max_positions
        short_cos, short_sin = _table(short_inv_freq.float(), switch, attention_factor)
        long_cos, long_sin = _table(long_inv_freq.float(), max_positions, attention_factor)
        self.register_buffer("cos_table", torch.cat((short_cos, long_cos)), persistent=False)
        self.register_buffer("sin_table", torch.cat((short_sin, long_sin)), persistent=False)

    def row_offset(self, total_tokens: int) -> int:
        """Added to the positions of a sequence that holds `total_tokens` tokens after this step."""
        return self.switch if total_tokens > self.switch else 0

    def lookup(self, positions: torch.Tensor, meta: AttentionMetadata, dtype: torch.dtype):
        """(cos, sin) [T, 1, dim] in dtype for table rows [T] (see row_offset)."""
        return self.gather(positions, dtype)

    def gather(self, positions: torch.Tensor, dtype: torch.dtype):
        cos = self.cos_table[positions].to(dtype).unsqueeze(1)
        sin = self.sin_table[positions].to(dtype).unsqueeze(1)
        return cos, sin

    def decode(self, positions: torch.Tensor, dtype: torch.dtype):
        return self.gather(positions, dtype)
