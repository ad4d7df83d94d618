"""Tiny random-weight models of every family as HF directories (for GGUF round trips),
and the default GGUF's tokenizer metadata (SmolLM2, byte-level BPE) to write with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from family_models import _randomise
from transformers import AutoConfig, AutoModelForCausalLM

from infer_worker.gguf_loader import GGUFFile
from infer_worker.loader import default_gguf_path

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3_text": "Gemma3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
}


def base_config(model_type: str) -> dict[str, Any]:
    return {
        "architectures": [ARCHITECTURES[model_type]],
        "model_type": model_type,
        "vocab_size": 49152,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
        "torch_dtype": "float32",
    }


def write_hf_model(path: Path, model_type: str, seed: int = 0, **changes: Any) -> Path:
    """config.json + model.safetensors of a tiny random `model_type` model."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    raw = {**base_config(model_type), **changes}
    raw = {k: v for k, v in raw.items() if v is not None or k == "sliding_window"}
    (path / "config.json").write_text(json.dumps(raw, indent=2))
    config = AutoConfig.from_pretrained(path)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _randomise(model, seed)
    model.save_pretrained(path)
    (path / "config.json").write_text(json.dumps(raw, indent=2))
    return path


def gguf_vocab_of_default() -> dict[str, Any]:
    """The tokenizer.* metadata of the default model's GGUF."""
    meta = GGUFFile(default_gguf_path()).meta
    return {k: v for k, v in meta.items() if k.startswith("tokenizer.")}


def gguf_and_reference_greedy(
    hf_dir: Path, gguf: Path, ids: list[list[int]], new_tokens: int
) -> tuple[list[list[int]], list[list[int]]]:
    """(infer's batched greedy tokens from the GGUF file, transformers' float32 greedy
    tokens from the HF directory), prefilled in 24-token chunks over 8-token blocks."""
    from family_models import reference_greedy

    from infer_scheduler import LLM

    expected = reference_greedy(hf_dir, ids, new_tokens)
    llm = LLM(str(gguf), device="cpu", dtype="float32", max_batch_tokens=24, block_size=8)
    outs = llm.generate(ids, max_tokens=new_tokens, ignore_eos=True)
    return [o.token_ids for o in outs], expected
