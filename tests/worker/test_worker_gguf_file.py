"""GGUF files written by the test: every supported tensor type, llama.cpp's Q/K permutation,
metadata -> config and tokenizer, and equality with the same weights loaded from a HF directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGUFWriter
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize
from safetensors.torch import load_file, save_file
from worker_paged import PagedRunner

from infer_worker import load_model
from infer_worker.gguf_loader import GGUFFile
from infer_worker.loader import default_gguf_path
from infer_worker.testing import write_tiny_llama

FORWARD_TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]
K_TYPES = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def gguf_name(hf: str) -> str:
    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if hf in top:
        return top[hf]
    _, _, layer, *mid, kind = hf.split(".")
    return f"blk.{layer}.{LAYER_NAMES['.'.join(mid)]}.{kind}"


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert script: interleave the two rotary halves of each head."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def encode(array: np.ndarray, qtype: T, rng: np.random.Generator) -> np.ndarray:
    """Bytes (or float array) the writer stores for `array` in `qtype`."""
    if qtype == T.F32:
        return array.astype(np.float32)
    if qtype == T.F16:
        return array.astype(np.float16)
    if qtype in K_TYPES or qtype in (T.IQ2_XXS, T.Q8_K):  # gguf-py cannot quantize: random blocks
        block, size = GGML_QUANT_SIZES[qtype]
        return rng.integers(
            0, 256, (array.shape[0], array.shape[1] // block * size), dtype=np.uint8
        )
    return quantize(array.astype(np.float32), qtype)


def write_gguf(
    path: Path,
    hf_dir: Path,
    types: list[T],
    seed: int = 0,
    extra: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Write hf_dir's tiny Llama as a GGUF; 2-D tensors cycle through `types`.

    Returns the float32 weights (HF names, unpermuted) the loader must produce.
    """
    config = json.loads((hf_dir / "config.json").read_text())
    source = GGUFFile(default_gguf_path())
    weights = load_file(str(hf_dir / "model.safetensors"))
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(config["head_dim"])
    writer.add_vocab_size(config["vocab_size"])
    meta = source.meta
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    writer.add_token_list(meta["tokenizer.ggml.tokens"])
    writer.add_token_types(meta["tokenizer.ggml.token_type"])
    writer.add_token_merges(meta["tokenizer.ggml.merges"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_chat_template(meta["tokenizer.chat_template"])
    expected: dict[str, np.ndarray] = {}
    index = 0
    for name, tensor in weights.items():
        array = tensor.float().numpy()
        if array.ndim == 1:
            writer.add_tensor(gguf_name(name), array)
            expected[name] = array
            continue
        qtype = types[index % len(types)]
        index += 1
        stored = array
        if name.endswith("q_proj.weight"):
            stored = permute(array, config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            stored = permute(array, config["num_key_value_heads"])
        data = encode(stored, qtype, rng)
        if qtype in (T.F32, T.F16):
            writer.add_tensor(gguf_name(name), data)
        else:
            writer.add_tensor(gguf_name(name), data, raw_dtype=qtype)
        if qtype == T.Q8_K:  # gguf-py cannot dequantize it either: the loader must refuse it
            continue
        back = dequantize(
            data if qtype not in (T.F32, T.F16) else data.view(np.uint8), qtype
        ).reshape(array.shape)
        if name.endswith("q_proj.weight"):
            back = permute_back(back, config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            back = permute_back(back, config["num_key_value_heads"])
        expected[name] = back.astype(np.float32)
    for name, array in (extra or {}).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def permute_back(w: np.ndarray, heads: int) -> np.ndarray:
    return (
        w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def loaded_hf_weights(bundle) -> dict[str, torch.Tensor]:
    """The bundle's weights split back into HF names (q/k/v and gate/up unfused)."""
    cfg = bundle.config
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    out = {}
    for name, param in bundle.model.named_parameters():
        full = name if name.startswith("lm_head") else f"model.{name}"
        if "qkv_proj" in name:
            for part, t in zip("qkv", param.split([q, kv, kv]), strict=True):
                out[full.replace("qkv_proj", f"{part}_proj")] = t
        elif "gate_up_proj" in name:
            for part, t in zip(("gate", "up"), param.chunk(2), strict=True):
                out[full.replace("gate_up_proj", f"{part}_proj")] = t
        else:
            out[full] = param
    return out


@pytest.fixture(scope="module")
def tiny_256(tmp_path_factory) -> Path:
    return write_tiny_llama(
        tmp_path_factory.mktemp("g") / "hf",
        hidden_size=256,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=256,
        num_layers=2,
        seed=9,
    )


def test_every_forward_type_and_the_permutation(tiny_256: Path, tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    expected = write_gguf(path, tiny_256, FORWARD_TYPES)
    bundle = load_model(str(path))
    assert bundle.served_name == "tiny"
    cfg = bundle.config
    assert (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.num_layers) == (256, 4, 2, 2)
    assert cfg.add_bos_token and cfg.bos_token == "<|im_start|>" and cfg.eos_token == "<|im_end|>"
    assert not cfg.tie_word_embeddings
    assert bundle.tokenizer.encode("hi").ids[0] == 1  # add-bos flag honoured
    loaded = loaded_hf_weights(bundle)
    assert set(loaded) == set(expected)
    for name, want in expected.items():
        assert torch.equal(loaded[name], torch.from_numpy(want)), name
    # same weights through a HF directory give the same logits
    save_file(
        {k: torch.from_numpy(v).contiguous() for k, v in expected.items()},
        str(tiny_256 / "model.safetensors"),
    )
    reference = load_model(str(tiny_256))
    ids = list(range(300, 340))
    runs = []
    for b in (bundle, reference):
        runner = PagedRunner(b, num_blocks=16, block_size=8)
        runs.append(runner.step([ids], [0], runner.tables([len(ids)])))
    assert (runs[0] - runs[1]).abs().max().item() < 1e-5


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # random scales may be inf/nan
def test_k_quants_dequantize_like_gguf(tiny_256: Path, tmp_path: Path) -> None:
    path = tmp_path / "kquant.gguf"
    expected = write_gguf(path, tiny_256, K_TYPES, seed=3)
    loaded = loaded_hf_weights(load_model(str(path)))
    for name, want in expected.items():
        torch.testing.assert_close(
            loaded[name], torch.from_numpy(want), rtol=0, atol=0, equal_nan=True
        )


def test_rope_freqs_tensor_gives_llama3_scaling(tmp_path: Path) -> None:
    """Llama 3 GGUFs carry rope scaling as a rope_freqs tensor of per-frequency divisors."""
    from test_worker_tiny_llama import PROMPT, hf_logits

    from infer_worker.models.rotary import inv_frequencies

    hf = write_tiny_llama(tmp_path / "hf", seed=4)
    config = json.loads((hf / "config.json").read_text())
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    config.update(rope_scaling=scaling, rope_theta=500000.0)
    (hf / "config.json").write_text(json.dumps(config))
    plain, _ = inv_frequencies(config["head_dim"], 500000.0, None)
    scaled, _ = inv_frequencies(config["head_dim"], 500000.0, scaling)
    factors = (plain / scaled).numpy().astype(np.float32)
    assert (factors > 1).any()
    path = tmp_path / "llama3.gguf"
    write_gguf(path, hf, [T.F32], extra={"rope_freqs.weight": factors})
    bundle = load_model(str(path))
    assert bundle.config.rope_scaling["rope_type"] == "freq_factors"
    runner = PagedRunner(bundle, num_blocks=16, block_size=8)
    ours = runner.step([PROMPT], [0], runner.tables([len(PROMPT)]))[0]
    expected = hf_logits(hf, PROMPT)[-1]
    assert (ours - expected).abs().max().item() < 1e-4
