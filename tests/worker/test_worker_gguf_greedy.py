"""The default GGUF model decodes greedily exactly like transformers (float32, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from worker_paged import PagedRunner

from infer_worker import ModelBundle

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain recursion to a child in two sentences.",
    "List three prime numbers greater than 50.",
    "def fib(n):\n    # complete this Python function",
    "Translate 'good morning' into Spanish and German.",
    "Why is the sky blue?",
    "Give me a short recipe for pancakes.",
]
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def reference(gguf_path: Path):
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    model.eval()
    return tokenizer, model


def test_default_model_config(default_bundle: ModelBundle) -> None:
    config = default_bundle.config
    assert default_bundle.served_name == "smollm2"
    assert (config.num_layers, config.hidden_size, config.num_heads, config.num_kv_heads) == (
        30,
        576,
        9,
        3,
    )
    assert config.vocab_size == 49152 and config.context_length == 8192
    assert config.tie_word_embeddings
    tok = default_bundle.tokenizer
    assert config.eos_token == "<|im_end|>"
    assert tok.token_to_id("<|im_end|>") in config.eos_token_ids
    assert tok.token_to_id("<|endoftext|>") in config.eos_token_ids
    assert (
        default_bundle.chat_template is not None and "<|im_start|>" in default_bundle.chat_template
    )
    assert default_bundle.model.training is False


def test_greedy_matches_transformers(default_bundle: ModelBundle, reference) -> None:
    hf_tokenizer, hf_model = reference
    prompts = [
        hf_tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True
        )
        for q in QUESTIONS
    ]
    prompts = [
        list(p["input_ids"]) if isinstance(p, dict) or hasattr(p, "keys") else list(p)
        for p in prompts
    ]
    ours = PagedRunner(default_bundle, num_blocks=128, block_size=16).greedy(prompts, NEW_TOKENS)
    mixed = PagedRunner(default_bundle, num_blocks=128, block_size=8).staggered_greedy(
        prompts, NEW_TOKENS
    )
    assert mixed == ours  # continuous batching (mixed prefill chunks and decodes) changes nothing
    for prompt, got in zip(prompts, ours, strict=True):
        with torch.no_grad():
            out = hf_model.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
        expected = out[0, len(prompt) :].tolist()
        assert got[: len(expected)] == expected, hf_tokenizer.decode(prompt)
        assert len(expected) == NEW_TOKENS
