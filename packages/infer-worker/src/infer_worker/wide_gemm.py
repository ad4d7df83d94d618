"""Float32 GEMMs for wide (prefill-sized) CPU bf16 batches.

On the 2-core AVX-512 CI machine class oneDNN's bf16 GEMM (avx512_core_bf16
brgemm, no AMX) ran at ~40-60 GFLOP/s for 512-row inputs while its float32
GEMM on the same shapes ran 1.5-2x faster, so a prefill step's linears take
less time through a float32 copy of the weight, and round once (to bf16, at
the output) instead of in bf16 arithmetic. Decode batches are memory-bound
(bf16 / int8 weights stream fewer bytes) and keep the bf16 paths.

Invariant: the float32 copy holds exactly the bf16 weight's values, so the
result differs from the bf16 GEMM only by accumulation and output rounding.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from .onednn_rows import packed_linear

DEFAULT_MIN_ROWS = 64


class Float32Weight(nn.Module):
    """A oneDNN-prepacked float32 copy of one weight, used for inputs of >= min_rows rows."""

    def __init__(self, weight: torch.Tensor, min_rows: int, bias: torch.Tensor | None) -> None:
        super().__init__()
        w = weight.detach().float()
        packed = torch.ops.mkldnn._reorder_linear_weight(w, max(min_rows, 512))
        self.register_buffer("packed", packed, persistent=False)
        self.bias = None if bias is None else bias.detach().float()
        self.min_rows = min_rows
        self.dtype = weight.dtype

    def applies(self, x: torch.Tensor) -> bool:
        """True when x [M, K] has at least min_rows rows and the weight's dtype."""
        return x.dim() == 2 and x.shape[0] >= self.min_rows and x.dtype == self.dtype

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] @ weight.T (+ bias) -> [M, N] in x's dtype, computed in float32."""
        out = packed_linear(x.float(), self.packed, self.bias)
        return out.to(x.dtype)


@functools.cache
def cpu_has_amx() -> bool:
    """True on CPUs with AMX tiles, where oneDNN's bf16 GEMM outruns float32 (so this path
    would not pay)."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
