"""The fused bf16 steps (fused_cpu.py, csrc/fused.cpp) against the torch ops they replace:
equal up to one bf16 rounding step (the float math inside differs only in summation order
and the exp implementation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infer_worker import fused_cpu
from infer_worker.models.layers import RMSNorm
from infer_worker.models.rotary import apply_rotary


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype == torch.bfloat16 and got.shape == want.shape
    # within two bf16 ulps of the larger magnitude, and nearly always identical
    ulp = want.float().abs().clamp(min=1e-3) * 2**-7
    assert bool(((got.float() - want.float()).abs() <= 2 * ulp).all())
    assert (got != want).float().mean() < 0.02


def _torch_rms(x, norm):
    with torch.no_grad():
        dtype = x.dtype
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + norm.eps)
        return norm.weight * y.to(dtype)


@pytest.mark.parametrize("rows", [1, 7, 16])
def test_rms_norm(cpp_kernel, rows: int) -> None:
    norm = RMSNorm(576, 1e-5).to(torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(576) + 0.5)
    x = (torch.randn(rows, 576) * 3).to(torch.bfloat16)
    got = fused_cpu.rms_norm(x, norm.weight, norm.eps)
    assert got is not None, "the C++ kernels did not build"
    _close(got, _torch_rms(x, norm))
    with torch.no_grad():
        _close(norm(x), _torch_rms(x, norm))  # the module takes the fused path


@pytest.mark.parametrize("tokens", [1, 16])
def test_rotary_on_a_qkv_split(cpp_kernel, tokens: int) -> None:
    qkv = torch.randn(tokens, 9 * 64 + 2 * 3 * 64).to(torch.bfloat16)
    q, k, _ = qkv.split([9 * 64, 3 * 64, 3 * 64], dim=-1)  # strided views, as in Attention
    q, k = q.view(tokens, 9, 64), k.view(tokens, 3, 64)
    angle = torch.rand(tokens, 1, 64) * 6
    cos, sin = angle.cos().to(torch.bfloat16), angle.sin().to(torch.bfloat16)
    got = fused_cpu.rotary(q, k, cos, sin)
    want = apply_rotary(q, k, cos, sin)
    assert got is not None
    _close(got[0], want[0])
    _close(got[1], want[1])


def test_silu_mul(cpp_kernel) -> None:
    gate_up = (torch.randn(1, 2 * 1536) * 4).to(torch.bfloat16)
    gate, up = gate_up.split(1536, dim=-1)
    got = fused_cpu.silu_mul(gate_up)
    assert got is not None
    _close(got, F.silu(gate) * up)
    assert fused_cpu.silu_mul(torch.cat([gate_up, gate_up])) is None  # torch's ops: faster


def test_prefill_sized_inputs_keep_the_torch_ops(cpp_kernel) -> None:
    """Above MAX_ROWS tokens torch's vectorized ops are faster than the scalar loops."""
    x = torch.randn(fused_cpu.MAX_ROWS + 1, 64).to(torch.bfloat16)
    assert fused_cpu.rms_norm(x, torch.ones(64).to(torch.bfloat16), 1e-5) is None
    assert fused_cpu.silu_mul(x) is None
    assert fused_cpu.rms_norm(x[:-1], torch.ones(64).to(torch.bfloat16), 1e-5) is not None


def test_other_dtypes_keep_the_torch_ops(cpp_kernel) -> None:
    x = torch.randn(3, 64)
    assert fused_cpu.rms_norm(x, torch.ones(64), 1e-5) is None  # float32: exactness first
    assert fused_cpu.silu_mul(x) is None
    q = torch.randn(3, 2, 8)
    assert fused_cpu.rotary(q, q, torch.ones(3, 1, 8), torch.zeros(3, 1, 8)) is None
