"""Int8 linears for CPU bf16 models.

Weights are int8 with one scale per output row. How the input meets them
depends on the number of rows M (measured on the 2-core AVX-512-VNNI CI
machine, docs/benchmarks.md):

- M <= WEIGHT_ONLY_ROWS: weight-only (`torch._weight_int8pack_mm`, bf16
  input); the step streams every weight once, so halving its bytes is what
  pays (and with an int4 copy attached, see int4.py, that one halves them
  again).
- otherwise W8A8: the input is quantized to int8 per row in two passes (the
  value, then its residual; see csrc/int8_linear.cpp) and both passes go
  through one int8 GEMM (VNNI, `torch._int_mm`), 2-3x faster than oneDNN's
  bf16 GEMM here from 8 rows up to prefill sizes. The two passes keep the
  input's error under max|x| / 2^15, about bf16's own precision.

The C++ kernel (cpp_kernels.py) does quantize, GEMM and rescale in one call;
until it is built `int8_linear_torch` computes the same thing in torch ops.

Invariant: quantization is symmetric per output row, q = round(w / s) with
s = max|w_row| / 127, so |w - q * s| <= s / 2 element-wise.
"""

from __future__ import annotations

import torch
from torch import nn

from .cpp_kernels import int8_kernel
from .int4 import Int4Weight

WEIGHT_ONLY_ROWS = 2


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 [N, K], scales [N] in weight's dtype) for a weight [N, K]."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
    return q, scale.to(weight.dtype)


def _split_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] float32 -> (int8 [M, K], scale [M, 1]) with x ~= q * scale (0 rows give 0)."""
    amax = x.abs().amax(dim=1, keepdim=True)
    scale = amax / 127.0
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    return torch.round(x * inv).to(torch.int8), scale


def int8_linear_torch(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    float_out: bool = False,
) -> torch.Tensor:
    """The W8A8 two-pass linear in torch ops (what csrc/int8_linear.cpp computes).

    x [M, K] float32/bf16, qweight int8 [N, K], scale float32 [N] -> [M, N] in x's dtype
    (float32 if float_out).
    """
    xf = x.float()
    q1, s1 = _split_rows(xf)
    q2, s2 = _split_rows(xf - q1.float() * s1)
    acc = torch._int_mm(torch.cat([q1, q2]), qweight.t()).float()
    rows = x.shape[0]
    out = (acc[:rows] * s1 + acc[rows:] * s2) * scale
    if bias is not None:
        out = out + bias.float()
    return out if float_out else out.to(x.dtype)


def w8a8_linear(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    float_out: bool = False,
) -> torch.Tensor:
    """The W8A8 two-pass linear: the C++ kernel when built, else int8_linear_torch."""
    kernel = int8_kernel()
    if kernel is None:
        return int8_linear_torch(x, qweight, scale, bias, float_out)
    return kernel(x, qweight, scale, bias, float_out)


class Int8Weight(nn.Module):
    """The int8 copy of one weight and the row limit under which it is used."""

    def __init__(self, weight: torch.Tensor, max_rows: int) -> None:
        super().__init__()
        q, scale = quantize_rows(weight)
        self.register_buffer("qweight", q, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("scale32", scale.float(), persistent=False)
        self.max_rows = max_rows
        self.int4: Int4Weight | None = None  # used instead for <= WEIGHT_ONLY_ROWS rows

    def applies(self, x: torch.Tensor) -> bool:
        """True when x [M, K] is small enough and in the dtype the scales were made for."""
        return x.dim() == 2 and x.shape[0] <= self.max_rows and x.dtype == self.scale.dtype

    def matmul(
        self, x: torch.Tensor, bias: torch.Tensor | None = None, float_out: bool = False
    ) -> torch.Tensor:
        """x [M, K] @ dequantized weight.T (+ bias) -> [M, N] in x's dtype (or float32)."""
        if x.shape[0] <= WEIGHT_ONLY_ROWS:
            return self.weight_only(x, bias, float_out)
        return w8a8_linear(x, self.qweight, self.scale32, bias, float_out)

    def weight_only(
        self, x: torch.Tensor, bias: torch.Tensor | None = None, float_out: bool = False
    ) -> torch.Tensor:
        """matmul's path for few rows: the bf16 input times the int4 copy, else the int8."""
        if self.int4 is not None:
            out = self.int4.matmul(x)
        else:
            out = torch._weight_int8pack_mm(x.contiguous(), self.qweight, self.scale)
        out = out if bias is None else out + bias
        return out.float() if float_out else out


def pack_weight(weight: torch.Tensor, batch_hint: int) -> torch.Tensor:
    """The weight [N, K] reordered for oneDNN's linear (torch.ops.mkldnn._reorder_linear_weight)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_hint)
