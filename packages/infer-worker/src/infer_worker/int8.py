"""Int8 weight-only linears for small CPU batches.

At batch 1 a CPU decode step streams every weight once, so it is bound by
memory bandwidth: int8 weights (one bf16 scale per output row) halve the
bytes against bf16. At larger batches the step is compute-bound and
`torch._weight_int8pack_mm` is slower than a bf16 GEMM, so each linear keeps
its full-precision weight and uses the int8 copy only when the input has at
most `max_rows` rows.

Invariant: quantization is symmetric per output row, q = round(w / s) with
s = max|w_row| / 127, so |w - q * s| <= s / 2 element-wise.
"""

from __future__ import annotations

import torch
from torch import nn


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 [N, K], scales [N] in weight's dtype) for a weight [N, K]."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
    return q, scale.to(weight.dtype)


class Int8Weight(nn.Module):
    """The int8 copy of one weight and the row limit under which it is used."""

    def __init__(self, weight: torch.Tensor, max_rows: int) -> None:
        super().__init__()
        q, scale = quantize_rows(weight)
        self.register_buffer("qweight", q, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self.max_rows = max_rows

    def applies(self, x: torch.Tensor) -> bool:
        """True when x [M, K] is small enough and in the dtype the scales were made for."""
        return x.dim() == 2 and x.shape[0] <= self.max_rows and x.dtype == self.scale.dtype

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] @ dequantized weight.T -> [M, N] in x's dtype."""
        return torch._weight_int8pack_mm(x.contiguous(), self.qweight, self.scale)


def pack_weight(weight: torch.Tensor, batch_hint: int) -> torch.Tensor:
    """The weight [N, K] reordered for oneDNN's linear (torch.ops.mkldnn._linear_pointwise)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_hint)


def int8_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """The int8 kernel is used on CPU for bf16 models (float32 stays exact, CUDA untouched)."""
    return device.type == "cpu" and dtype == torch.bfloat16
