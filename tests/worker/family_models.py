"""Tiny random-weight Gemma 2, Gemma 3 (text) and Phi-3 models built with transformers,
written as HF directories, and transformers' own greedy tokens for them (a helper module).

Every special feature of each family is switched on: soft-capping, alternating and
5:1 sliding-window layers with a window smaller than the prompts, q/k norm, dual
rope bases with linear scaling on the global layers, longrope with distinct short
and long factors, partial rotary and the attention factor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from infer_worker.testing import IM_END, smollm2_tokenizer

HIDDEN = 64
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 16
LAYERS = 6
LONGROPE_ORIGINAL = 40  # Phi-3 longrope threshold: longer sequences use the long factors


def _common(vocab: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "hidden_size": HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-6,
        "torch_dtype": "float32",
    }


def gemma2_config(vocab: int) -> dict[str, Any]:
    return {
        **_common(vocab),
        "architectures": ["Gemma2ForCausalLM"],
        "model_type": "gemma2",
        "head_dim": HEAD_DIM,
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "query_pre_attn_scalar": 24,
        "sliding_window": 12,
        "final_logit_softcapping": 6.0,
        "attn_logit_softcapping": 3.0,
        "tie_word_embeddings": False,
    }


def gemma3_config(vocab: int) -> dict[str, Any]:
    return {
        **_common(vocab),
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "head_dim": HEAD_DIM,
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 512,
        "rope_theta": 100000.0,
        "rope_local_base_freq": 1000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 4.0},
        "sliding_window_pattern": 3,  # layers 2 and 5 global, the others local
        "query_pre_attn_scalar": 20,
        "sliding_window": 10,
        "final_logit_softcapping": 8.0,
        "tie_word_embeddings": False,
    }


def phi3_config(vocab: int) -> dict[str, Any]:
    rotary_half = int(HEAD_DIM * 0.75) // 2
    short = [1.0 + 0.05 * i for i in range(rotary_half)]
    long = [1.5 + 0.7 * i for i in range(rotary_half)]
    return {
        **_common(vocab),
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "hidden_act": "silu",
        "max_position_embeddings": 4 * LONGROPE_ORIGINAL,
        "original_max_position_embeddings": LONGROPE_ORIGINAL,
        "partial_rotary_factor": 0.75,
        "rope_theta": 10000.0,
        "rope_scaling": {"type": "longrope", "short_factor": short, "long_factor": long},
        "sliding_window": 24,
        "tie_word_embeddings": False,
    }


CONFIGS = {"gemma2": gemma2_config, "gemma3": gemma3_config, "phi3": phi3_config}


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights with a scale that gives clearly separated logits (no greedy near-ties)."""
    gen = torch.Generator().manual_seed(seed)
    gemma = "gemma" in model.config.model_type
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if name.endswith("norm.weight"):
                param.copy_(noise * 0.1 + (0.0 if gemma else 1.0))
            elif "embed_tokens" in name or name == "lm_head.weight":
                # Gemma scales embeddings by sqrt(hidden): a smaller scale keeps the input
                # token from dominating. (With tied embeddings greedy random models repeat
                # one token forever, so the generation tests untie; a logits test ties.)
                param.copy_(noise * (0.1 if gemma else 0.5))
            else:
                param.copy_(noise * 0.15)


def write_config(path: Path, family: str, **changes: Any) -> dict[str, Any]:
    """Write config.json, tokenizer.json and tokenizer_config.json (no weights); the config."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer, chat_template = smollm2_tokenizer()
    raw = CONFIGS[family](tokenizer.get_vocab_size())
    raw["eos_token_id"] = tokenizer.token_to_id(IM_END)
    raw["bos_token_id"] = tokenizer.token_to_id("<|im_start|>")
    raw["pad_token_id"] = raw["eos_token_id"]
    raw.update(changes)
    (path / "config.json").write_text(json.dumps(raw, indent=2))
    tokenizer.save(str(path / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|im_start|>",
        "eos_token": IM_END,
        "pad_token": IM_END,
        "add_bos_token": False,
        "chat_template": chat_template,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return raw


def write_family(path: Path, family: str, seed: int = 0, **changes: Any) -> Path:
    """Write a tiny `family` model (config overrides in `changes`) with SmolLM2's tokenizer."""
    path = Path(path)
    raw = write_config(path, family, **changes)
    config = AutoConfig.from_pretrained(path)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _randomise(model, seed)
    model.save_pretrained(path)
    (path / "config.json").write_text(json.dumps(raw, indent=2))  # the raw form, as on the Hub
    return path


def reference_greedy(path: Path, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """transformers' float32 greedy continuation of each prompt (one at a time, with cache)."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([prompt])
            gen = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                eos_token_id=None,
                pad_token_id=0,
            )
            out.append(gen[0, len(prompt) :].tolist())
    return out


def prompts(vocab: int, lengths: list[int], seed: int = 1) -> list[list[int]]:
    """Random token-id prompts of the given lengths (ids below 4096, away from specials)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(100, 4096, (n,), generator=gen).tolist() for n in lengths]
