"""Stacked quantized weights and GGUF loading without a float copy agree with gguf_loader."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGUFWriter
from gguf import GGMLQuantizationType as T
from quant_blocks import random_blocks

from infer_worker.gguf_loader import GGUFFile
from infer_worker.quant import kernels
from infer_worker.quant.formats import quantize_int4, quantize_int8
from infer_worker.quant.gguf_repack import repack
from infer_worker.quant.weights import StackedWeight, gguf_weights


def test_stack_merges_parts_of_one_format_and_matches_reference():
    torch.manual_seed(0)
    q = quantize_int4(torch.randn(64, 256))
    k = quantize_int4(torch.randn(32, 256))
    v = repack(random_blocks(T.Q6_K, 32, 256), T.Q6_K)
    dense = torch.randn(16, 256).bfloat16()
    stack = StackedWeight([q, k, v, dense])
    assert len(stack.parts) == 3 and stack.shape == (144, 256)
    full = torch.cat([q.dequantize(), k.dequantize(), v.dequantize(), dense.float()])
    for rows in (1, 5):
        x = torch.randn(rows, 256).bfloat16()
        ref = x.float() @ full.t()
        out = stack.matmul(x).float()
        assert out.shape == (rows, 144)
        assert ((out - ref).abs() <= 2**-7 * ref.abs().amax(dim=1, keepdim=True) + 1e-6).all()
    index = torch.tensor([143, 0, 70, 100, 63])
    assert torch.equal(stack.rows(index, torch.float32), full[index].float())
    assert stack.nbytes() == q.nbytes() + k.nbytes() + v.nbytes() + dense.nbytes


def test_stack_refuses_mismatched_columns():
    with pytest.raises(ValueError, match="columns"):
        StackedWeight([quantize_int8(torch.randn(4, 64)), quantize_int8(torch.randn(4, 128))])


def _write(path: Path, tensors: dict[str, tuple[np.ndarray, T]]) -> None:
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    for name, (data, qtype) in tensors.items():
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_weights_equal_the_dequantizing_loader(tmp_path, caplog):
    heads, kv_heads, hidden = 4, 2, 256
    tensors = {
        "blk.0.attn_q.weight": (random_blocks(T.Q4_K, hidden, hidden, 1), T.Q4_K),
        "blk.0.attn_k.weight": (random_blocks(T.Q4_K, 128, hidden, 2), T.Q4_K),
        "blk.0.attn_v.weight": (random_blocks(T.Q6_K, 128, hidden, 3), T.Q6_K),
        "blk.0.ffn_down.weight": (random_blocks(T.Q8_0, hidden, 512, 4), T.Q8_0),
    }
    path = tmp_path / "m.gguf"
    _write(path, tensors)
    gguf = GGUFFile(path)
    config = SimpleNamespace(num_heads=heads, num_kv_heads=kv_heads)
    expected = dict(gguf.weights(config, torch.float32))
    with caplog.at_level(logging.INFO, logger="infer_worker"):
        got = dict(gguf_weights(gguf, heads, kv_heads))
    hf = {
        "blk.0.attn_q.weight": "model.layers.0.self_attn.q_proj.weight",
        "blk.0.attn_k.weight": "model.layers.0.self_attn.k_proj.weight",
        "blk.0.attn_v.weight": "model.layers.0.self_attn.v_proj.weight",
        "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
    }
    for name, weight in got.items():
        assert torch.equal(weight.dequantize(), expected[hf[name]]), name
    assert "GGUF Q4_K: 2 tensors held as 4-bit groups of 32, exact" in caplog.text
    assert "GGUF Q6_K: 1 tensors held as 8-bit groups of 16" in caplog.text
    x = torch.randn(2, hidden).bfloat16()
    out = kernels.group_matmul(x, got["blk.0.attn_q.weight"]).float()
    ref = x.float() @ expected[hf["blk.0.attn_q.weight"]].t()
    assert ((out - ref).abs() <= 2**-7 * ref.abs().amax(dim=1, keepdim=True) + 1e-5).all()


def test_gguf_weights_refuse_an_unmapped_type(tmp_path):
    block, size = GGML_QUANT_SIZES[T.IQ2_XXS]
    data = np.zeros((4, 256 // block * size), np.uint8)
    _write(tmp_path / "m.gguf", {"blk.0.attn_q.weight": (data, T.IQ2_XXS)})
    with pytest.raises(KeyError, match="IQ2_XXS"):
        list(gguf_weights(GGUFFile(tmp_path / "m.gguf"), 4, 2))
