"""GGUF metadata -> transformers config dict: what is mapped, what llama.cpp hard-codes,
and every key that would change the math without being mapped is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infer_worker import load_model
from infer_worker.errors import ModelLoadError
from infer_worker.gguf_config import hf_config_from_gguf
from infer_worker.testing_gguf import gguf_metadata, hf_weights_as_gguf, write_gguf


def meta(arch: str, **extra) -> dict:
    base = {
        "general.architecture": arch,
        f"{arch}.context_length": 512,
        f"{arch}.embedding_length": 64,
        f"{arch}.feed_forward_length": 128,
        f"{arch}.block_count": 6,
        f"{arch}.attention.head_count": 4,
        f"{arch}.attention.head_count_kv": 2,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-6,
        f"{arch}.rope.freq_base": 10000.0,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
    }
    return base | {f"{arch}.{k}": v for k, v in extra.items()}


def convert(m: dict, tensors=("token_embd.weight", "blk.0.attn_q.bias"), values=None) -> dict:
    return hf_config_from_gguf(m, list(tensors), "x.gguf", values or (lambda name: [1.0] * 8))


def test_llama_keys_become_transformers_keys() -> None:
    m = meta("llama", **{"attention.key_length": 32, "attention.value_length": 32})
    m["llama.rope.dimension_count"] = 32
    config = convert(m)
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert config["head_dim"] == 32 and config["num_key_value_heads"] == 2
    assert config["max_position_embeddings"] == 512 and config["rms_norm_eps"] == 1e-6
    assert config["tie_word_embeddings"] and config["attention_bias"]
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    assert "rope_scaling" not in config


def test_rope_scaling_linear_yarn_and_rope_freqs() -> None:
    linear = convert(meta("llama", **{"rope.scaling.type": "linear", "rope.scaling.factor": 4.0}))
    assert linear["rope_scaling"] == {"rope_type": "linear", "factor": 4.0}
    yarn = convert(
        meta(
            "qwen2",
            **{
                "rope.scaling.type": "yarn",
                "rope.scaling.factor": 4.0,
                "rope.scaling.original_context_length": 128,
            },
        )
    )
    assert yarn["rope_scaling"] == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 128,
    }
    freqs = convert(meta("llama"), tensors=["rope_freqs.weight", "blk.0.attn_q.bias"])
    assert freqs["rope_scaling"] == {"rope_type": "freq_factors", "factors": [1.0] * 8}
    with pytest.raises(ModelLoadError, match="rope.scaling.type.*'dynamic'"):
        convert(meta("llama", **{"rope.scaling.type": "dynamic"}))


def test_gemma_values_llama_cpp_hard_codes() -> None:
    gemma2 = convert(meta("gemma2", **{"attention.key_length": 16, "attention.sliding_window": 8}))
    assert gemma2["query_pre_attn_scalar"] == 16
    assert (gemma2["attn_logit_softcapping"], gemma2["final_logit_softcapping"]) == (50.0, 30.0)
    assert gemma2["layer_types"][:2] == ["sliding_attention", "full_attention"]
    assert gemma2["sliding_window"] == 8 and gemma2["hidden_activation"] == "gelu_pytorch_tanh"
    gemma3 = convert(meta("gemma3", **{"attention.key_length": 16}))
    assert gemma3["model_type"] == "gemma3_text" and gemma3["rope_local_base_freq"] == 10000.0
    assert gemma3["layer_types"].count("full_attention") == 1
    assert gemma3["layer_types"][5] == "full_attention"
    big = meta("gemma2", **{"attention.key_length": 16})
    big["gemma2.block_count"] = 46  # llama.cpp's 27B: queries scaled by hidden / heads
    assert convert(big)["query_pre_attn_scalar"] == 16  # 64 / 4


def test_phi3_partial_rotary_and_longrope() -> None:
    m = meta(
        "phi3",
        **{
            "rope.dimension_count": 12,
            "rope.scaling.attn_factor": 1.2,
            "rope.scaling.original_context_length": 40,
        },
    )
    tensors = ["rope_factors_long.weight", "rope_factors_short.weight", "output.weight"]
    config = convert(m, tensors, lambda name: [2.0 if "long" in name else 1.0] * 6)
    assert config["partial_rotary_factor"] == 12 / 16
    assert config["rope_scaling"] == {
        "rope_type": "longrope",
        "long_factor": [2.0] * 6,
        "short_factor": [1.0] * 6,
        "attention_factor": 1.2,
        "original_max_position_embeddings": 40,
    }
    assert not config["tie_word_embeddings"]


def test_sliding_window_keys_of_llama_and_phi3() -> None:
    """A llama file with a window is transformers' Mistral; 0 means no window (the
    converter writes 0 for Phi-4); a window beside q/k/v biases is refused by name."""
    mistral = convert(meta("llama", **{"attention.sliding_window": 16}), ["token_embd.weight"])
    assert mistral["architectures"] == ["MistralForCausalLM"] and mistral["sliding_window"] == 16
    assert mistral["model_type"] == "mistral" and "attention_bias" not in mistral
    plain = convert(meta("llama", **{"attention.sliding_window": 0}))
    assert plain["architectures"] == ["LlamaForCausalLM"] and "sliding_window" not in plain
    assert convert(meta("phi3", **{"attention.sliding_window": 24}))["sliding_window"] == 24
    assert "sliding_window" not in convert(meta("phi3", **{"attention.sliding_window": 0}))
    with pytest.raises(ModelLoadError, match=r"llama\.attention\.sliding_window=16.*biases"):
        convert(meta("llama", **{"attention.sliding_window": 16}))  # with blk.0.attn_q.bias


@pytest.mark.parametrize(
    ("arch", "extra", "named"),
    [
        ("llama", {"attention.layer_norm_epsilon": 1e-5}, "llama.attention.layer_norm_epsilon"),
        ("llama", {"expert_count": 8}, "llama.expert_count"),
        ("llama", {"attention.scale": 0.1}, "llama.attention.scale"),
        ("qwen2", {"rope.dimension_count": 8}, "rope.dimension_count"),
        ("qwen2", {"attention.sliding_window": 16}, "qwen2.attention.sliding_window"),
        ("llama", {"attention.key_length": 16, "attention.value_length": 32}, "value_length"),
        ("gemma3", {"attn_logit_softcapping": 50.0}, "gemma3.attn_logit_softcapping"),
        ("llama", {"rope.scaling.type": "longrope"}, "longrope"),
    ],
)
def test_unmapped_math_keys_are_refused_by_name(arch: str, extra: dict, named: str) -> None:
    with pytest.raises(ModelLoadError, match=named.replace(".", r"\.")):
        convert(meta(arch, **extra))


def test_other_refusals() -> None:
    with pytest.raises(ModelLoadError, match="'bert'"):
        convert({"general.architecture": "bert"})
    with pytest.raises(ModelLoadError, match="split"):
        convert(meta("llama") | {"split.count": 2})
    with pytest.raises(ModelLoadError, match="bias"):
        convert(meta("qwen2"), tensors=["token_embd.weight"])
    with pytest.raises(ModelLoadError, match="head_count_kv"):
        convert(meta("llama", **{"attention.head_count_kv": [2, 1, 2, 2, 2, 2]}))


def test_refusal_reaches_load_model(tmp_path: Path) -> None:
    """An unmapped key in a real file stops load_model with the key's name."""
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "num_hidden_layers": 1,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 64,
        "vocab_size": 257,
    }
    m = gguf_metadata(config, "llama", "t") | {"llama.attention.clamp_kqv": 8.0}
    m |= {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": [chr(0x100 + i) for i in range(256)] + ["ĀĀ"],
        "tokenizer.ggml.merges": ["Ā Ā"],
    }
    rng = np.random.default_rng(0)
    weights = {"model.embed_tokens.weight": rng.standard_normal((257, 64), dtype=np.float32)}
    path = write_gguf(
        tmp_path / "clamp.gguf", "llama", m, hf_weights_as_gguf(config, "llama", weights)
    )
    with pytest.raises(ModelLoadError, match=r"llama\.attention\.clamp_kqv"):
        load_model(str(path))
