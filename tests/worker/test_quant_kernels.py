"""The group-format matmul paths agree with the float32 reference on this machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
from quant_blocks import random_blocks

from infer_worker.quant import kernels
from infer_worker.quant.formats import quantize_int4, quantize_int8
from infer_worker.quant.gguf_repack import repack

T = GGMLQuantizationType


def _weights():
    torch.manual_seed(0)
    w = torch.randn(72, 512)
    return {
        "int4": quantize_int4(w),
        "int8/32": quantize_int8(w),
        "int8/16": quantize_int8(w, 16),
        "Q4_K": repack(random_blocks(T.Q4_K, 72, 512), T.Q4_K),
        "Q5_K": repack(random_blocks(T.Q5_K, 72, 512), T.Q5_K),
        "Q6_K": repack(random_blocks(T.Q6_K, 72, 512), T.Q6_K),
    }


WEIGHTS = _weights()


@pytest.fixture(scope="module")
def built():
    module = kernels.module()
    assert module is not None, "the C++ group kernels failed to build"
    return module


@pytest.mark.parametrize("name", list(WEIGHTS))
@pytest.mark.parametrize("rows", [1, 2, 3, 8, 37])
@pytest.mark.parametrize("path", ["kernel", "tiles"])
def test_paths_match_reference(built, name, rows, path):
    weight = WEIGHTS[name]
    x = torch.randn(rows, weight.shape[1]).bfloat16()
    ref = kernels.reference_matmul(x, weight)
    fn = kernels.kernel_matmul if path == "kernel" else kernels.tiles_matmul
    out = fn(x, weight)
    assert out.shape == (rows, weight.shape[0]) and out.dtype == torch.bfloat16
    # bf16 output (and bf16 weight tiles on the tiles path): ~2^-8 of the row's magnitude
    scale = ref.abs().amax(dim=1, keepdim=True)
    assert ((out.float() - ref).abs() <= 2**-7 * scale + 1e-6).all()


@pytest.mark.parametrize("path", ["kernel", "tiles"])
@pytest.mark.parametrize("name", ["Q4_K", "int4"])
def test_float32_input_is_near_exact(built, path, name):
    weight = WEIGHTS[name]
    x = torch.randn(37, weight.shape[1])
    fn = kernels.kernel_matmul if path == "kernel" else kernels.tiles_matmul
    out = fn(x, weight)
    assert out.dtype == torch.float32
    ref = kernels.reference_matmul(x, weight)
    # float32 throughout (the tiles path once multiplied float32 input in bf16: ~2^-9)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_reference_is_gguf_dequantize():
    data = random_blocks(T.Q4_K, 8, 256)
    w = torch.from_numpy(dequantize(data, T.Q4_K).astype(np.float32))
    x = torch.randn(2, 256)
    assert torch.equal(kernels.reference_matmul(x, repack(data, T.Q4_K)), x @ w.t())


def test_plan_names_the_machine():
    plan = kernels.plan()
    flags = kernels.cpu_flags()
    assert ("avx512f" in plan.features) == ("avx512f" in flags)
    assert plan.kernel_rows >= 1
    assert "C++ kernel" in plan.describe()
