"""Fused elementwise steps (csrc/fused.cpp) for the eager bf16 CPU path.

A batch-1 decode step of a small model is mostly per-op dispatch: RMSNorm is
8 torch ops, rotate-half RoPE 14, SiLU-and-multiply 3. Each function here
does one of them in one C++ call, rounding to bf16 where those ops do, and
returns None (the caller then runs the torch ops) unless the inputs are bf16
on the CPU with at most MAX_ROWS tokens (SILU_MAX_ROWS for SiLU-multiply; the loops
are scalar: for larger inputs torch's vectorized ops are faster), the C++ library is built, and no
torch.compile trace is running (the compiled graph fuses these itself).
"""

from __future__ import annotations

import torch

from .cpp_kernels import fused_kernels

MAX_ROWS = 16


def _kernels(x: torch.Tensor):
    if (
        x.dtype != torch.bfloat16
        or not x.is_cpu
        or x.shape[0] > MAX_ROWS
        or torch.compiler.is_compiling()
    ):
        return None
    return fused_kernels()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor | None:
    """weight * normalised x for x [T, H], or None."""
    kernels = _kernels(x)
    if kernels is None or x.dim() != 2 or weight.dtype != torch.bfloat16:
        return None
    return kernels.rms_norm_bf16(x, weight, eps)


def rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """apply_rotary(q, k, cos, sin) for cos/sin [T, 1, D], or None."""
    kernels = _kernels(q)
    if kernels is None or cos.dtype != torch.bfloat16:
        return None
    q, k = kernels.rotary_bf16(q, k, cos[:, 0], sin[:, 0])
    return q, k


SILU_MAX_ROWS = 1  # its scalar exp loop: 1 row 8.0 vs 7.5 us torch, 2 rows 15.7 vs 9.1, 8 59 vs 16


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor | None:
    """silu(gate) * up for gate_up [T, 2I] = [gate | up] of one row, or None (torch's
    vectorized ops are faster from 2 rows: 1 x 3072 bf16, 1 thread, CPU time)."""
    kernels = _kernels(gate_up)
    if kernels is None or gate_up.dim() != 2 or gate_up.shape[0] > SILU_MAX_ROWS:
        return None
    return kernels.silu_mul_bf16(gate_up)
