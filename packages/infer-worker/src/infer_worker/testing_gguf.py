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
