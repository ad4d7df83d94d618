"""Test helper: write a Hugging Face model (config dict, weights, tokenizer metadata) as
a GGUF file the way llama.cpp's convert_hf_to_gguf.py does, so both transformers
(`gguf_file=`) and infer can load it.

What the converter changes and the loaders must undo: tensor names (blk.N.*),
llama's Q/K row permutation (interleaved rotary halves), Gemma's RMSNorm weights
stored as w + 1, Phi-3's fused qkv / gate_up tensors kept fused, the Llama 3
rope scaling as a `rope_freqs` tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter
from gguf.quants import quantize

from .testing_gguf_rope import llama3_rope_factors, yarn_keys

_LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.qkv_proj": "attn_qkv",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# post_attention_layernorm is ffn_norm where there is no post-attention norm of its own
_GEMMA_LAYER = {
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}
_TOP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
GEMMA = ("gemma2", "gemma3")


def gguf_tensor_name(arch: str, hf_name: str) -> str:
    """llama.cpp's name for the HF tensor `hf_name`."""
    if hf_name in _TOP:
        return _TOP[hf_name]
    _, _, layer, *mid, kind = hf_name.split(".")
    part = ".".join(mid)
    table = {**_LAYER, "post_attention_layernorm": "ffn_norm"}
    if arch in GEMMA:
        table.update(_GEMMA_LAYER)
    return f"blk.{layer}.{table[part]}.{kind}"


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's LlamaModel.permute: interleave the two rotary halves of each head."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def _value_type(value: Any) -> tuple[GGUFValueType, GGUFValueType | None]:
    if isinstance(value, bool):
        return GGUFValueType.BOOL, None
    if isinstance(value, int):
        return (GGUFValueType.UINT32 if value >= 0 else GGUFValueType.INT32), None
    if isinstance(value, float):
        return GGUFValueType.FLOAT32, None
    if isinstance(value, str):
        return GGUFValueType.STRING, None
    first = value[0]
    if isinstance(first, str):
        return GGUFValueType.ARRAY, GGUFValueType.STRING
    if isinstance(first, float):
        return GGUFValueType.ARRAY, GGUFValueType.FLOAT32
    return GGUFValueType.ARRAY, GGUFValueType.INT32


def write_gguf(
    path: Path,
    arch: str,
    metadata: Mapping[str, Any],
    tensors: Mapping[str, np.ndarray],
    qtype: Callable[[str, np.ndarray], GGMLQuantizationType] | None = None,
    raw: Mapping[str, tuple[np.ndarray, GGMLQuantizationType]] | None = None,
) -> Path:
    """Write `metadata` (full GGUF keys -> Python values) and `tensors` (GGUF names ->
    float arrays, numpy order); `qtype(name, array)` picks each tensor's type (F32
    default); `raw` adds tensors given as stored bytes (uint8 rows) of a type."""
    writer = GGUFWriter(str(path), arch)
    for key, value in metadata.items():
        if key == "general.architecture":
            continue
        vtype, sub = _value_type(value)
        writer.add_key_value(key, value, vtype, sub_type=sub)
    for name, array in tensors.items():
        kind = qtype(name, array) if qtype else GGMLQuantizationType.F32
        array = np.ascontiguousarray(array, dtype=np.float32)
        if kind == GGMLQuantizationType.F32:
            writer.add_tensor(name, array)
        elif kind == GGMLQuantizationType.F16:
            writer.add_tensor(name, array.astype(np.float16))
        else:
            writer.add_tensor(name, quantize(array, kind), raw_dtype=kind)
    for name, (data, kind) in (raw or {}).items():
        writer.add_tensor(name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


LLAMA_CPP_ARCH = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "phi3": "phi3",
}


def gguf_metadata(config: dict[str, Any], arch: str, name: str) -> dict[str, Any]:
    """The `{arch}.*` keys llama.cpp's converter writes for this config.json dict.

    Raises ValueError for a config llama.cpp cannot represent (it would hard-code a
    different value), so a test never compares against a silently different model."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    meta: dict[str, Any] = {"general.name": name}
    keys = {
        "context_length": config["max_position_embeddings"],
        "embedding_length": hidden,
        "feed_forward_length": config["intermediate_size"],
        "block_count": config["num_hidden_layers"],
        "attention.head_count": heads,
        "attention.head_count_kv": config.get("num_key_value_heads") or heads,
        "attention.layer_norm_rms_epsilon": float(config["rms_norm_eps"]),
        "rope.freq_base": float(config.get("rope_theta", 10000.0)),
        "vocab_size": config["vocab_size"],
    }
    if arch != "phi3" and (arch != "llama" or config.get("head_dim")):
        keys["attention.key_length"] = keys["attention.value_length"] = head_dim
    if arch == "llama":
        keys["rope.dimension_count"] = head_dim
    scaling = dict(config.get("rope_scaling") or {})
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        keys["rope.scaling.type"] = "linear"
        keys["rope.scaling.factor"] = float(scaling["factor"])
    if kind == "yarn":
        keys.update(yarn_keys(scaling))
    if arch == "llama" and config.get("sliding_window"):
        # llama.cpp's converter drops Mistral's window; this writer keeps it (infer reads it)
        keys["attention.sliding_window"] = config["sliding_window"]
    if arch in ("gemma2", "gemma3"):
        big = {"gemma2": 46, "gemma3": 62}[arch] == config["num_hidden_layers"]
        if config.get("query_pre_attn_scalar") != (hidden // heads if big else head_dim):
            raise ValueError("llama.cpp fixes Gemma's query_pre_attn_scalar to head_dim")
        keys["attention.sliding_window"] = config["sliding_window"]
    if arch == "gemma2":
        keys["attn_logit_softcapping"] = float(config.get("attn_logit_softcapping") or 0.0)
        keys["final_logit_softcapping"] = float(config.get("final_logit_softcapping") or 0.0)
        if not config.get("attn_logit_softcapping") or not config.get("final_logit_softcapping"):
            raise ValueError("llama.cpp always soft-caps Gemma 2")
    if arch == "gemma3":
        if config.get("final_logit_softcapping") is not None:
            raise ValueError("llama.cpp's Gemma 3 has no final soft-cap")
        if config.get("sliding_window_pattern", 6) != 6:
            keys["attention.sliding_window_pattern"] = config["sliding_window_pattern"]
        if config.get("rope_local_base_freq", 10000.0) != 10000.0:
            keys["rope.freq_base_swa"] = float(config["rope_local_base_freq"])
    if arch == "phi3":
        keys["rope.dimension_count"] = int(head_dim * config.get("partial_rotary_factor", 1.0))
        # as llama.cpp's converter: 0 when there is no window (Phi-4)
        keys["attention.sliding_window"] = config.get("sliding_window") or 0
        if kind in ("longrope", "su"):
            original = config["original_max_position_embeddings"]
            scale = config["max_position_embeddings"] / original
            attn = 1.0 if scale <= 1 else float(np.sqrt(1 + np.log(scale) / np.log(original)))
            keys["rope.scaling.attn_factor"] = attn
            keys["rope.scaling.original_context_length"] = original
    meta.update({f"{arch}.{k}": v for k, v in keys.items()})
    return meta


def hf_weights_as_gguf(
    config: dict[str, Any], arch: str, weights: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """GGUF-named tensors as llama.cpp's converter stores them (permuted Q/K for llama,
    Gemma norms + 1, Llama 3 rope_freqs, Phi-3 longrope factor tensors)."""
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    out = {}
    for hf_name, array in weights.items():
        array = np.asarray(array, dtype=np.float32)
        if arch == "llama" and ".q_proj." in hf_name:
            array = permute(array, heads)
        elif arch == "llama" and ".k_proj." in hf_name:
            array = permute(array, kv_heads)
        elif arch in GEMMA and hf_name.endswith("norm.weight"):
            array = array + np.float32(1.0)
        out[gguf_tensor_name(arch, hf_name)] = array
    scaling = dict(config.get("rope_scaling") or {})
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "llama3":
        out["rope_freqs.weight"] = llama3_rope_factors(config, head_dim)
    if arch == "phi3" and kind in ("longrope", "su"):
        out["rope_factors_long.weight"] = np.array(scaling["long_factor"], np.float32)
        out["rope_factors_short.weight"] = np.array(scaling["short_factor"], np.float32)
    return out


def write_hf_as_gguf(
    path: Path,
    hf_dir: Path,
    vocab: Mapping[str, Any],
    name: str | None = None,
    qtype: Callable[[str, np.ndarray], GGMLQuantizationType] | None = None,
) -> Path:
    """Write the HF directory `hf_dir` (config.json + *.safetensors) with the tokenizer
    metadata `vocab` (tokenizer.* keys) as one GGUF file at `path`."""
    import json

    from safetensors.numpy import load_file

    config = json.loads((Path(hf_dir) / "config.json").read_text())
    arch = LLAMA_CPP_ARCH[config["model_type"]]
    weights: dict[str, np.ndarray] = {}
    for shard in sorted(Path(hf_dir).glob("*.safetensors")):
        weights.update(load_file(str(shard)))
    meta = {**gguf_metadata(config, arch, name or config["model_type"]), **vocab}
    return write_gguf(path, arch, meta, hf_weights_as_gguf(config, arch, weights), qtype)
