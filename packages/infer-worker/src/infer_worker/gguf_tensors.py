"""GGUF tensors -> transformers' names and values.

`tensor_plan` pairs every tensor of the file with its HF name and the one fix-up
llama.cpp's converter requires undoing: the Q/K row permutation of the "llama"
architecture, or the +1 stored in Gemma's RMSNorm weights. A consumer that wants
the raw blocks (quantized kernels) takes the entries whose `fixup` is None as
they are; `dequantize_entry` gives float32 values for any entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from .errors import ModelLoadError
from .gguf_reader import TensorInfo

_TOP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_QK_NORM = {"attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}
_GEMMA = {
    "ffn_norm": "pre_feedforward_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_LAYER_BY_ARCH = {
    "llama": _LAYER,
    "qwen2": _LAYER,
    "qwen3": _LAYER | _QK_NORM,
    "gemma2": _LAYER | _GEMMA,
    "gemma3": _LAYER | _GEMMA | _QK_NORM,
    "phi3": {k: v for k, v in _LAYER.items() if k not in ("attn_q", "attn_k", "attn_v", "ffn_gate")}
    | {"attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"},
}
# tensors read into the config (rope scaling), not weights
CONFIG_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
_BIASED = ("attn_q", "attn_k", "attn_v", "attn_qkv")


@dataclass(frozen=True)
class PlanEntry:
    hf_name: str
    tensor: TensorInfo
    fixup: str | None  # None, "unpermute:<heads>" or "minus_one"


def hf_tensor_name(arch: str, name: str) -> str | None:
    """transformers' name for GGUF tensor `name`, or None when it has none."""
    if name in _TOP:
        return _TOP[name]
    pieces = name.split(".")
    if len(pieces) != 4 or pieces[0] != "blk" or not pieces[1].isdigit():
        return None
    part = _LAYER_BY_ARCH[arch].get(pieces[2])
    if part is None or (pieces[3] == "bias" and pieces[2] not in _BIASED):
        return None
    if pieces[3] not in ("weight", "bias"):
        return None
    return f"model.layers.{pieces[1]}.{part}.{pieces[3]}"


def tensor_plan(
    arch: str, tensors: list[TensorInfo], heads: int, kv_heads: int, source: str
) -> list[PlanEntry]:
    """Every weight tensor with its HF name and fix-up; unknown tensors raise ModelLoadError."""
    plan = []
    for tensor in tensors:
        if tensor.name in CONFIG_TENSORS:
            continue
        name = hf_tensor_name(arch, tensor.name)
        if name is None:
            raise ModelLoadError(source, f"unexpected tensor {tensor.name!r} for {arch!r}")
        fixup = None
        if arch == "llama" and ".attn_q." in tensor.name:
            fixup = f"unpermute:{heads}"
        elif arch == "llama" and ".attn_k." in tensor.name:
            fixup = f"unpermute:{kv_heads}"
        elif arch in ("gemma2", "gemma3") and tensor.name.endswith("norm.weight"):
            fixup = "minus_one"
        plan.append(PlanEntry(name, tensor, fixup))
    return plan


def check_types(tensors: list[TensorInfo], source: str) -> None:
    """ModelLoadError naming the first tensor whose type gguf cannot dequantize."""
    seen: set[GGMLQuantizationType] = set()
    for tensor in tensors:
        if tensor.qtype in seen:
            continue
        _, type_size = GGML_QUANT_SIZES[tensor.qtype]
        try:
            dequantize(np.zeros(type_size, dtype=np.uint8), tensor.qtype)
        except NotImplementedError:
            raise ModelLoadError(
                source, f"tensor {tensor.name!r} has unsupported type {tensor.qtype.name}"
            ) from None
        seen.add(tensor.qtype)


def dequantize_tensor(tensor: TensorInfo) -> np.ndarray:
    """float32 values of a GGUF tensor in its numpy shape (leading 1-dims dropped)."""
    array = np.asarray(dequantize(tensor.data, tensor.qtype), dtype=np.float32)
    array = array.reshape(tensor.shape)
    while array.ndim > 1 and array.shape[0] == 1:
        array = array[0]
    return array


def dequantize_entry(entry: PlanEntry) -> np.ndarray:
    """float32 values in transformers' layout (llama.cpp's fix-up undone)."""
    array = dequantize_tensor(entry.tensor)
    if entry.fixup == "minus_one":
        return array - np.float32(1.0)
    if entry.fixup and entry.fixup.startswith("unpermute:"):
        return unpermute(array, int(entry.fixup.split(":")[1]))
    return array


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's reshape(heads, 2, d/2, ...).swapaxes(1, 2) of Q/K rows."""
    rows = w.shape[0]
    rest = w.shape[1:]
    return w.reshape(heads, rows // heads // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)
