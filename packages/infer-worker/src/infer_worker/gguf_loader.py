"""Read a GGUF file: hyper-parameters, tokenizer, chat template and dequantized weights.

The metadata becomes a transformers config.json-style dict (gguf_config) that goes
through ModelConfig.from_hf, the parser of a HF directory's config.json; weights are yielded in
transformers' naming and layout (gguf_tensors), so all architecture math lives on
the HF side.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ModelConfig
from .errors import ModelLoadError
from .gguf_config import HF_ARCHITECTURES, hf_config_from_gguf
from .gguf_reader import GGUFFormatError, read_gguf
from .gguf_tensors import (
    PlanEntry,
    check_types,
    dequantize_entry,
    dequantize_tensor,
    tensor_plan,
)
from .gguf_tokenizer import tokenizer_from_gguf
from .special_tokens import stop_token_ids

log = logging.getLogger("infer_worker")

SUPPORTED_ARCHITECTURES = tuple(HF_ARCHITECTURES)


class GGUFFile:
    """An opened GGUF file; metadata is read eagerly, tensors lazily."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = str(path)
        try:
            self.meta, self.tensors = read_gguf(path)
        except (OSError, GGUFFormatError, KeyError) as exc:
            raise ModelLoadError(self.source, f"not a readable GGUF file ({exc})") from None
        self.arch = self.meta.get("general.architecture")
        if self.arch not in SUPPORTED_ARCHITECTURES:
            raise ModelLoadError(
                self.source,
                f"unsupported architecture {self.arch!r} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})",
            )
        self.tensor_names = {t.name for t in self.tensors}
        check_types(self.tensors, self.source)

    def _tensor_values(self, name: str) -> list[float]:
        tensor = next(t for t in self.tensors if t.name == name)
        return [float(v) for v in dequantize_tensor(tensor).reshape(-1)]

    def hf_config(self) -> dict[str, Any]:
        """The transformers config.json dict this file describes; ModelLoadError if refused."""
        try:
            return hf_config_from_gguf(
                self.meta, [t.name for t in self.tensors], self.source, self._tensor_values
            )
        except (TypeError, ValueError, IndexError) as exc:
            raise ModelLoadError(self.source, f"malformed GGUF metadata ({exc})") from None

    def config(self, tokenizer) -> ModelConfig:
        """Hyper-parameters through the HF config parser, plus the tokenizer's specials."""
        raw = self.hf_config()
        raw.setdefault("vocab_size", self._vocab_size())
        if self.meta.get("tokenizer.ggml.add_eos_token"):
            raise ModelLoadError(
                self.source,
                "tokenizer.ggml.add_eos_token=True (eos after every prompt) is not supported",
            )
        config = ModelConfig.from_hf(raw, self.source)
        tokens = self.meta.get("tokenizer.ggml.tokens") or []
        bos_id = self.meta.get("tokenizer.ggml.bos_token_id")
        eos_id = self.meta.get("tokenizer.ggml.eos_token_id")
        declared = [
            eos_id,
            self.meta.get("tokenizer.ggml.eot_token_id"),
            self.meta.get("tokenizer.ggml.eom_token_id"),
        ]
        spm = self.meta.get("tokenizer.ggml.model") == "llama"
        config.bos_token_id = None if bos_id is None else int(bos_id)
        config.eos_token_ids = stop_token_ids(tokenizer, declared)
        config.bos_token = None if bos_id is None else tokens[int(bos_id)]
        config.eos_token = None if eos_id is None else tokens[int(eos_id)]
        config.add_bos_token = bool(self.meta.get("tokenizer.ggml.add_bos_token", spm))
        return config

    def _vocab_size(self) -> int:
        """Rows of the embedding (may exceed the token list when padded), else the token count."""
        embed = next((t for t in self.tensors if t.name == "token_embd.weight"), None)
        if embed is not None and len(embed.shape) == 2:
            return int(embed.shape[0])
        return len(self.meta.get("tokenizer.ggml.tokens") or [])

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

    def plan(self, config: ModelConfig) -> list[PlanEntry]:
        """Every weight with its HF name and llama.cpp fix-up (see gguf_tensors)."""
        return tensor_plan(
            self.arch, self.tensors, config.num_heads, config.num_kv_heads, self.source
        )

    def weights(
        self, config: ModelConfig, dtype: torch.dtype
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, tensor in dtype) for every weight in the file."""
        for entry in self.plan(config):
            array = dequantize_entry(entry)
            yield entry.hf_name, torch.from_numpy(np.array(array, copy=True)).to(dtype)
