"""Every tensor type the gguf package dequantizes loads to exactly gguf's values (quantized
with gguf.quants where it can, else random blocks with finite scales), and every other
type is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

from infer_worker import load_model
from infer_worker.errors import ModelLoadError
from infer_worker.gguf_loader import GGUFFile
from infer_worker.testing import tiny_llama_weights
from infer_worker.testing_gguf import gguf_tensor_name, permute, write_gguf

DEQUANTIZED = [
    T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
    T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.TQ1_0, T.TQ2_0, T.MXFP4, T.NVFP4,
    T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M, T.IQ4_NL, T.IQ4_XS,
]  # fmt: skip
REFUSED = [T.Q8_1, T.Q8_K, T.I8, T.I16, T.I32, T.I64, T.F64]


def random_blocks(rows: int, cols: int, qtype: T, rng: np.random.Generator) -> np.ndarray:
    """Random bytes for `qtype`, each block redrawn until it dequantizes to finite,
    moderate values (so scale fields hold sane half floats)."""
    block, size = GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, (rows * cols // block, size), dtype=np.uint8)
    for _ in range(200):
        with np.errstate(all="ignore"):
            values = dequantize(data, qtype).reshape(data.shape[0], block)
        bad = ~np.isfinite(values).all(axis=1) | (np.abs(values).max(axis=1) > 1e4)
        if not bad.any():
            return data.reshape(rows, cols // block * size)
        data[bad] = rng.integers(0, 256, (int(bad.sum()), size), dtype=np.uint8)
    raise AssertionError(f"no finite blocks for {qtype.name}")


def encode(array: np.ndarray, qtype: T, rng: np.random.Generator) -> np.ndarray:
    try:
        return quantize(array, qtype)
    except NotImplementedError:
        return random_blocks(*array.shape, qtype, rng)


def write_typed(path: Path, hf_dir: dict[str, np.ndarray], qtype: T) -> dict[str, np.ndarray]:
    """The tiny Llama weights `hf_dir` as GGUF with every matrix in `qtype`; returns the expected
    float32 weights in HF layout."""
    weights = hf_dir
    vocab = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": [chr(0x100 + i) for i in range(256)] + ["ĀĀ"],
        "tokenizer.ggml.merges": ["Ā Ā"],
    }
    meta = {
        "llama.block_count": 1,
        "llama.context_length": 256,
        "llama.embedding_length": 256,
        "llama.feed_forward_length": 256,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.rope.freq_base": 10000.0,
        **vocab,
    }
    rng = np.random.default_rng(int(qtype))
    tensors, raw, expected = {}, {}, {}
    for name, array in weights.items():
        gguf = gguf_tensor_name("llama", name)
        stored = array
        heads = 4 if "q_proj" in name else 2
        if "q_proj" in name or "k_proj" in name:
            stored = permute(array, heads)
        if array.ndim == 1:
            tensors[gguf] = stored
            expected[name] = stored
            continue
        data = encode(stored, qtype, rng)
        raw[gguf] = (data, qtype)
        back = dequantize(data, qtype).reshape(array.shape).astype(np.float32)
        if "q_proj" in name or "k_proj" in name:
            back = permute_back(back, heads)
        expected[name] = back
    write_gguf(path, "llama", meta, tensors, raw=raw)
    return expected


def permute_back(w: np.ndarray, heads: int) -> np.ndarray:
    return (
        w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


@pytest.fixture(scope="module")
def tiny_256() -> dict[str, np.ndarray]:
    """One Llama layer, hidden 256, 4/2 heads, vocab 257 (HF names, float32)."""
    config = {
        "hidden_size": 256,
        "intermediate_size": 256,
        "head_dim": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 1,
        "vocab_size": 257,
    }
    weights = tiny_llama_weights(config, torch.Generator().manual_seed(5), False)
    return {k: v.numpy() for k, v in weights.items()}


@pytest.mark.parametrize("qtype", DEQUANTIZED, ids=lambda t: t.name)
def test_type_loads_like_gguf_dequantizes(qtype: T, tiny_256: dict, tmp_path: Path) -> None:
    path = tmp_path / f"{qtype.name}.gguf"
    expected = write_typed(path, tiny_256, qtype)
    gguf = GGUFFile(path)
    config = gguf.config(gguf.tokenizer())
    loaded = dict(gguf.weights(config, torch.float32))
    assert set(loaded) == set(expected)
    for name, want in expected.items():
        assert torch.equal(loaded[name], torch.from_numpy(want)), name
    assert gguf.linear_qtype() == qtype.name


def test_a_quantized_type_runs_the_model(tiny_256: dict, tmp_path: Path) -> None:
    path = tmp_path / "iq4.gguf"
    expected = write_typed(path, tiny_256, T.IQ4_NL)
    bundle = load_model(str(path))
    embed = expected["model.embed_tokens.weight"]
    assert torch.equal(bundle.model.embed_tokens.weight, torch.from_numpy(embed))
    assert bundle.linear_qtype == "IQ4_NL"


@pytest.mark.parametrize("qtype", REFUSED, ids=lambda t: t.name)
def test_other_types_are_refused_by_name(qtype: T, tiny_256: dict, tmp_path: Path) -> None:
    path = tmp_path / f"{qtype.name}.gguf"
    block, size = GGML_QUANT_SIZES[qtype]
    raw = {"blk.0.ffn_up.weight": (np.zeros((256, 256 // block * size), np.uint8), qtype)}
    meta = {"llama.block_count": 1}
    write_gguf(path, "llama", meta, {}, raw=raw)
    with pytest.raises(ModelLoadError, match=f"blk.0.ffn_up.weight.*{qtype.name}"):
        GGUFFile(path)
