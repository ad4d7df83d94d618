"""Int4 weights for batch-1/2 CPU decode steps (groups of 32 along K, like GGUF Q4_1).

A decode step of one sequence streams every weight once, so its speed is the
weights' bytes: int4 halves int8's. Each group of 32 weights of a row is
stored as w = (q - 8) * scale + zero with q in 0..15, scale = (max - min) / 15
and zero = min + 8 * scale, i.e. Q4_1's grid (d = scale, m = min). Weights
loaded from a Q4_1 GGUF lie on that grid already (Q4_1 puts q = 0 at a
block's min and q = 15 at its max), so requantizing them gives the file's own
values back: `--int4 auto` turns this on for such models only.

The matmul is torch's CPU int4 weight-only kernel (`_weight_int4pack_mm_for_cpu`,
bf16 input and output), measured 1.7x faster than the int8 weight-only kernel
for one row (docs/benchmarks.md).

Invariant: |w - dequantized| <= scale / 2 element-wise (plus bf16 rounding of
scale and zero).
"""

from __future__ import annotations

import torch
from torch import nn

GROUP = 32


def quantize_groups(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q int32 [N, K] in 0..15, scale [N, K/32], zero [N, K/32]) float32 for weight [N, K]."""
    rows, cols = weight.shape
    w = weight.detach().float().reshape(rows, cols // GROUP, GROUP)
    low, high = w.amin(dim=2), w.amax(dim=2)
    scale = (high - low) / 15
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round((w - low[..., None]) / safe[..., None]).clamp_(0, 15).to(torch.int32)
    return q.reshape(rows, cols), scale, low + 8 * scale


def supported(weight: torch.Tensor) -> bool:
    """True for a CPU bf16 weight [N, K] with K a multiple of the group size."""
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.bfloat16
        and weight.dim() == 2
        and weight.shape[1] % GROUP == 0
        and hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")
    )


class Int4Weight(nn.Module):
    """The int4 copy of one bf16 weight [N, K], packed for torch's CPU int4 kernel."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        q, scale, zero = quantize_groups(weight)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        # [K/32, N, 2]: per group and output row, (scale, zero)
        scales_zeros = torch.stack([scale.t(), zero.t()], dim=2).to(weight.dtype).contiguous()
        self.register_buffer("packed", packed, persistent=False)
        self.register_buffer("scales_zeros", scales_zeros, persistent=False)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] bf16 @ dequantized weight.T -> [M, N] bf16."""
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.contiguous(), self.packed, GROUP, self.scales_zeros
        )

    def dequantized(self) -> torch.Tensor:
        """The weight [N, K] this copy stands for (float32), for tests."""
        eye = torch.eye(self.scales_zeros.shape[0] * GROUP, dtype=self.scales_zeros.dtype)
        return self.matmul(eye).float().t()
