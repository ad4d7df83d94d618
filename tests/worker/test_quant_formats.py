"""GGUF blocks repacked into the kernel formats dequantize to exactly gguf's own values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from quant_blocks import HALF_FIELDS, random_blocks

from infer_worker.quant.formats import GroupWeight, quantize_int4, quantize_int8
from infer_worker.quant.gguf_repack import MAPPING, repack

T = GGMLQuantizationType
_EXPECTED = {  # (bits, group, has offsets)
    T.Q4_0: (4, 32, True),
    T.Q4_1: (4, 32, True),
    T.Q4_K: (4, 32, True),
    T.Q8_0: (8, 32, False),
    T.Q5_0: (8, 32, False),
    T.Q5_1: (8, 32, True),
    T.Q5_K: (8, 32, True),
    T.Q6_K: (8, 16, False),
    T.Q2_K: (8, 16, True),
    T.Q3_K: (8, 16, False),
    T.IQ4_NL: (8, 32, False),
    T.IQ4_XS: (8, 32, False),
}


@pytest.mark.parametrize("qtype", list(HALF_FIELDS), ids=lambda t: t.name)
def test_repack_matches_gguf_dequantize_exactly(qtype):
    rows, cols = 48, 512
    data = random_blocks(qtype, rows, cols)
    weight = repack(data, qtype)
    bits, group, has_offset = _EXPECTED[qtype]
    assert (weight.bits, weight.group, weight.offset is not None) == (bits, group, has_offset)
    assert weight.shape == (rows, cols)
    expected = torch.from_numpy(dequantize(data, qtype).reshape(rows, cols).copy())
    got = weight.dequantize()
    assert torch.equal(got, expected), (got - expected).abs().max()
    # a row slice and a row reorder keep the same values
    assert torch.equal(weight.dequantize(slice(5, 9)), expected[5:9])
    index = torch.randperm(rows)
    assert torch.equal(weight.select_rows(index).dequantize(), expected[index])


@pytest.mark.parametrize("qtype", [T.Q4_0, T.Q4_1, T.Q8_0, T.Q5_0, T.Q5_1], ids=lambda t: t.name)
def test_repack_of_quantized_weights(qtype):
    """Real quantized weights (gguf's own quantizer), chunked over more rows than one chunk."""
    weights = np.random.default_rng(1).standard_normal((2100, 64)).astype(np.float32) * 0.02
    data = quantize(weights, qtype)
    expected = torch.from_numpy(dequantize(data, qtype).copy())
    assert torch.equal(repack(data, qtype).dequantize(), expected)


@pytest.mark.parametrize("qtype", [T.F32, T.F16, T.BF16], ids=lambda t: t.name)
def test_float_types_become_bf16(qtype):
    weights = np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32)
    data = (
        quantize(weights, qtype)
        if qtype == T.BF16
        else weights.astype(np.float16 if qtype == T.F16 else np.float32)
    )
    got = repack(data.view(np.uint8).reshape(8, -1), qtype)
    assert got.dtype == torch.bfloat16
    expected = torch.from_numpy(dequantize(data, qtype).copy()).to(torch.bfloat16)
    assert torch.equal(got, expected)


def test_every_mapped_type_is_tested():
    assert set(MAPPING) == set(HALF_FIELDS) | {T.F32, T.F16, T.BF16}


def test_unmapped_type_is_refused():
    with pytest.raises(KeyError, match="IQ2_XXS"):
        repack(np.zeros((1, 66), np.uint8), T.IQ2_XXS)


def test_quantizers_bound_their_error():
    w = torch.randn(16, 256)
    w4, w8 = quantize_int4(w), quantize_int8(w)
    scale4 = w4.scale.repeat_interleave(32, dim=1)
    scale8 = w8.scale.repeat_interleave(32, dim=1)
    assert ((w4.dequantize() - w).abs() <= scale4 / 2 + 1e-6).all()
    assert ((w8.dequantize() - w).abs() <= scale8 / 2 + 1e-6).all()
    assert w4.nbytes() == 16 * 128 + 2 * 16 * 8 * 4


def test_inconsistent_shapes_are_refused():
    with pytest.raises(ValueError, match="inconsistent"):
        GroupWeight(4, 16, torch.zeros(2, 8, dtype=torch.uint8), torch.zeros(2, 1), None)
