"""benchmarks/gguf_models.py: llama.cpp's Q4_K_M recipe, and files the loader reads exactly."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from gguf.quants import dequantize

from infer_worker.gguf_loader import GGUFFile
from infer_worker.quant.weights import gguf_weights

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gguf_models.py"


def _module():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("gguf_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_q4_k_m_plan_of_the_1b_and_8b_shapes():
    models = _module()
    counts = Counter(
        t.name for _, _, t in models.tensor_plan(models.SHAPES["llama-3.2-1b"], "Q4_K_M")
    )
    # 16 layers: attn_v and ffn_down of layers 0, 1, 4, 7, 10, 13, 14, 15 plus the tied embedding
    assert counts == {"Q4_K": 96, "Q6_K": 17, "F32": 33}
    plan8 = models.tensor_plan(models.SHAPES["llama-3.1-8b"], "Q8_0")
    assert Counter(t.name for _, _, t in plan8) == {"Q8_0": 226, "F32": 65}
    assert plan8[-1][:2] == ("output.weight", (128256, 4096))


def test_written_file_loads_in_kernel_formats(tmp_path):
    models = _module()
    shape = dict(hidden=256, inter=512, layers=2, heads=4, kv_heads=2, vocab=49152, tied=True)
    path = tmp_path / "tiny.gguf"
    models.write_model(path, shape, "Q4_K_M")
    gguf = GGUFFile(path)
    assert gguf.arch == "llama" and gguf.linear_qtype() is None  # Q4_K and Q6_K layers
    kinds = {t.name: t for t in gguf.tensors}
    got = dict(gguf_weights(gguf, 4, 2))
    for name in ("blk.1.ffn_gate.weight", "blk.1.attn_v.weight", "token_embd.weight"):
        t = kinds[name]
        expected = torch.from_numpy(np.asarray(dequantize(t.data, t.qtype)).copy())
        assert torch.equal(got[name].dequantize(), expected), name
    assert kinds["blk.1.attn_v.weight"].qtype.name == "Q6_K"  # last eighth of 2 layers
    assert kinds["blk.0.attn_q.weight"].qtype.name == "Q4_K"
