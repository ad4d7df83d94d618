"""Read a GGUF file: hyper-parameters, tokenizer, chat template and dequantized weights.

Weights are yielded in transformers' naming (model.layers.N.self_attn.q_proj.weight, ...);
for the "llama" architecture llama.cpp's row permutation of Q and K is undone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from .config import ModelConfig
from .errors import ModelLoadError
from .gguf_reader import GGUFFormatError, read_gguf
from .gguf_tokenizer import tokenizer_from_gguf
from .special_tokens import stop_token_ids

log = logging.getLogger("infer_worker")

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
SUPPORTED_TYPES = {
    GGMLQuantizationType.F32,
    GGMLQuantizationType.F16,
    GGMLQuantizationType.BF16,
    GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q4_0,
    GGMLQuantizationType.Q4_1,
    GGMLQuantizationType.Q5_0,
    GGMLQuantizationType.Q5_1,
    GGMLQuantizationType.Q2_K,
    GGMLQuantizationType.Q3_K,
    GGMLQuantizationType.Q4_K,
    GGMLQuantizationType.Q5_K,
    GGMLQuantizationType.Q6_K,
}
_LAYER_NAMES = {
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
_TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


class GGUFFile:
    """An opened GGUF file; metadata is read eagerly, tensors lazily."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = str(path)
        try:
            self.meta, self.tensors = read_gguf(path)
        except (OSError, GGUFFormatError) as exc:
            raise ModelLoadError(self.source, f"not a readable GGUF file ({exc})") from None
        self.arch = self.meta.get("general.architecture")
        if self.arch not in SUPPORTED_ARCHITECTURES:
            raise ModelLoadError(
                self.source,
                f"unsupported architecture {self.arch!r} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})",
            )
        self.tensor_names = {t.name for t in self.tensors}

    def _get(self, key: str, default: Any = ...) -> Any:
        full = f"{self.arch}.{key}"
        if full in self.meta:
            return self.meta[full]
        if default is ...:
            raise ModelLoadError(self.source, f"GGUF metadata lacks {full!r}")
        return default

    def config(self, tokenizer) -> ModelConfig:
        """Hyper-parameters from the metadata; malformed values raise ModelLoadError."""
        try:
            return self._config(tokenizer)
        except (TypeError, ValueError, IndexError) as exc:
            raise ModelLoadError(self.source, f"malformed GGUF metadata ({exc})") from None

    def _config(self, tokenizer) -> ModelConfig:
        heads = int(self._get("attention.head_count"))
        hidden = int(self._get("embedding_length"))
        tokens = self.meta.get("tokenizer.ggml.tokens") or []
        head_dim = int(
            self._get("attention.key_length", self._get("rope.dimension_count", hidden // heads))
        )
        scaling = None
        if self._get("rope.scaling.type", "none") == "linear":
            scaling = {"rope_type": "linear", "factor": float(self._get("rope.scaling.factor"))}
        factors = next((t for t in self.tensors if t.name == "rope_freqs.weight"), None)
        if factors is not None:
            values = dequantize(factors.data, factors.qtype).reshape(-1)
            if values.size != head_dim // 2:
                raise ModelLoadError(
                    self.source, f"rope_freqs has {values.size} entries, expected {head_dim // 2}"
                )
            scaling = {"rope_type": "freq_factors", "factors": [float(v) for v in values]}
        bos_id = self.meta.get("tokenizer.ggml.bos_token_id")
        eos_id = self.meta.get("tokenizer.ggml.eos_token_id")
        declared = [
            eos_id,
            self.meta.get("tokenizer.ggml.eot_token_id"),
            self.meta.get("tokenizer.ggml.eom_token_id"),
        ]
        config = ModelConfig(
            vocab_size=self._vocab_size(len(tokens)),
            hidden_size=hidden,
            intermediate_size=int(self._get("feed_forward_length")),
            num_layers=int(self._get("block_count")),
            num_heads=heads,
            num_kv_heads=int(self._get("attention.head_count_kv", heads)),
            head_dim=head_dim,
            rms_norm_eps=float(self._get("attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=float(self._get("rope.freq_base", 10000.0)),
            rope_scaling=scaling,
            context_length=int(self._get("context_length", 2048)),
            tie_word_embeddings="output.weight" not in self.tensor_names,
            attention_bias="blk.0.attn_q.bias" in self.tensor_names,
            bos_token_id=None if bos_id is None else int(bos_id),
            eos_token_ids=stop_token_ids(tokenizer, declared),
            bos_token=None if bos_id is None else tokens[int(bos_id)],
            eos_token=None if eos_id is None else tokens[int(eos_id)],
            add_bos_token=bool(self.meta.get("tokenizer.ggml.add_bos_token", False)),
        )
        config.validate(self.source)
        return config

    def _vocab_size(self, tokens: int) -> int:
        """Rows of the embedding (may exceed the token list when padded), else the metadata."""
        embed = next((t for t in self.tensors if t.name == "token_embd.weight"), None)
        if embed is not None and len(embed.shape) == 2:
            return int(embed.shape[0])
        return int(self._get("vocab_size", tokens))

    def tokenizer(self):
        return tokenizer_from_gguf(self.meta, self.source)

    def linear_qtype(self) -> str | None:
        """The GGUF type of the layer linears (blk.*.attn_*/ffn_* matrices) when they all
        share one, e.g. "Q4_1"; None when they differ."""
        kinds = {
            t.qtype.name
            for t in self.tensors
            if t.name.startswith("blk.") and t.name.endswith(".weight") and len(t.shape) == 2
        }
        return kinds.pop() if len(kinds) == 1 else None

    def chat_template(self) -> str | None:
        template = self.meta.get("tokenizer.chat_template")
        return template if isinstance(template, str) else None

    def weights(
        self, config: ModelConfig, dtype: torch.dtype
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, tensor in dtype) for every tensor in the file."""
        for tensor in self.tensors:
            name = _hf_name(tensor.name)
            if tensor.name == "rope_freqs.weight":
                continue  # read into config.rope_scaling
            if name is None:
                raise ModelLoadError(self.source, f"unexpected tensor {tensor.name!r}")
            if tensor.qtype not in SUPPORTED_TYPES:
                raise ModelLoadError(
                    self.source, f"tensor {tensor.name!r} has unsupported type {tensor.qtype.name}"
                )
            array = np.asarray(dequantize(tensor.data, tensor.qtype), dtype=np.float32)
            array = array.reshape(tensor.shape)
            while array.ndim > 1 and array.shape[0] == 1:
                array = array[0]
            if self.arch == "llama" and tensor.name.endswith(("attn_q.weight", "attn_q.bias")):
                array = _unpermute(array, config.num_heads)
            elif self.arch == "llama" and tensor.name.endswith(("attn_k.weight", "attn_k.bias")):
                array = _unpermute(array, config.num_kv_heads)
            yield name, torch.from_numpy(np.array(array, copy=True)).to(dtype)


def _hf_name(name: str) -> str | None:
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    pieces = name.split(".")
    if len(pieces) == 4 and pieces[0] == "blk" and pieces[2] in _LAYER_NAMES:
        return f"model.layers.{pieces[1]}.{_LAYER_NAMES[pieces[2]]}.{pieces[3]}"
    return None


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's reshape(heads, 2, d/2, ...).swapaxes(1, 2) of Q/K rows."""
    rows = w.shape[0]
    rest = w.shape[1:]
    return w.reshape(heads, rows // heads // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)
