"""The W8A8 int8 linear (int8.py, csrc/int8_linear.cpp): the C++ kernel against the torch
path and against the exact product with the dequantized weight."""

from __future__ import annotations

import pytest
import torch

from infer_worker.cpp_kernels import int8_kernel
from infer_worker.int8 import WEIGHT_ONLY_ROWS, Int8Weight, int8_linear_torch, quantize_rows


def _inputs(rows: int, k: int = 96, n: int = 80, dtype=torch.float32):
    torch.manual_seed(rows)
    x = torch.randn(rows, k)
    x[:, 7] *= 40  # an outlier channel, as LLM activations have
    weight = torch.randn(n, k) * torch.linspace(0.01, 0.3, n)[:, None]
    q, scale = quantize_rows(weight)
    return x.to(dtype), q, scale.float()


def _exact(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x.double() @ (q.double() * scale.double()[:, None]).t()


@pytest.mark.parametrize("rows", [3, 17, 130])
def test_two_pass_error_is_within_the_bound(rows: int) -> None:
    """|error| <= sum_k |w_k| * max|x| / 2^15 per output: the input is kept to ~15 bits."""
    x, q, scale = _inputs(rows)
    got = int8_linear_torch(x, q, scale, float_out=True).double()
    want = _exact(x, q, scale)
    bound = (q.double().abs() * scale.double()[:, None]).sum(1) * x.abs().amax(1, keepdim=True)
    assert bool(((got - want).abs() <= bound.double() / 2**15 + 1e-4).all())
    # one pass alone would be ~250x coarser: the second pass is what the bound needs
    single = (
        torch._int_mm(
            torch.round(x / (x.abs().amax(1, keepdim=True) / 127)).to(torch.int8), q.t()
        ).double()
        * (x.abs().amax(1, keepdim=True).double() / 127)
        * scale.double()
    )
    assert (single - want).abs().max() > 20 * (got - want).abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [3, 33])
def test_cpp_kernel_matches_the_torch_path(cpp_kernel, dtype, rows: int) -> None:
    kernel = int8_kernel()
    assert kernel is not None, "the C++ kernels did not build"
    x, q, scale = _inputs(rows, dtype=dtype)
    bias = torch.randn(q.shape[0]).to(dtype)
    for b in (None, bias):
        for float_out in (False, True):
            got = kernel(x, q, scale, b, float_out)
            want = int8_linear_torch(x, q, scale, b, float_out)
            assert got.dtype == want.dtype == (torch.float32 if float_out else dtype)
            torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-3)


def test_cpp_kernel_zero_rows_and_bad_input(cpp_kernel) -> None:
    kernel = int8_kernel()
    x, q, scale = _inputs(4)
    x[1] = 0
    out = kernel(x, q, scale, None, True)
    assert torch.equal(out[1], torch.zeros_like(out[1])) and bool(out.isfinite().all())
    assert kernel(x[:0], q, scale, None, True).shape == (0, q.shape[0])
    with pytest.raises(RuntimeError, match="int8_linear"):
        kernel(x[:, :-1], q, scale, None, True)  # K disagrees
    with pytest.raises(RuntimeError, match="int8_linear"):
        kernel(x, q.float(), scale, None, True)  # not an int8 weight


def test_int8_weight_picks_weight_only_for_few_rows(cpp_kernel) -> None:
    """Up to WEIGHT_ONLY_ROWS rows: bf16 input times the int8 weight (no input rounding);
    above: W8A8. Both stay close to the exact product."""
    x, q, scale = _inputs(WEIGHT_ONLY_ROWS + 1, dtype=torch.bfloat16)
    weight = (q.float() * scale[:, None]).bfloat16()
    int8 = Int8Weight(weight, max_rows=64)
    few = int8.matmul(x[:WEIGHT_ONLY_ROWS])
    assert torch.equal(
        few, torch._weight_int8pack_mm(x[:WEIGHT_ONLY_ROWS].contiguous(), int8.qweight, int8.scale)
    )
    more = int8.matmul(x, float_out=True)
    want = _exact(x.float(), int8.qweight, int8.scale32).float()
    torch.testing.assert_close(more, want, rtol=2e-2, atol=2e-2)
