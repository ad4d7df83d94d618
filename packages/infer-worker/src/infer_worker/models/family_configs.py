"""The config.json keys Gemma 2, Gemma 3 (text) and Phi-3 know, as transformers reads them.

A key outside a family's list (and outside NO_MATH) is refused by name: a config
either loads and computes what transformers computes, or is refused.
"""

from __future__ import annotations

from .hf_config import HFConfig

# keys that do not change inference (bookkeeping, training-only, generation defaults)
NO_MATH = frozenset(
    {
        "architectures",
        "model_type",
        "torch_dtype",
        "dtype",
        "transformers_version",
        "_name_or_path",
        "initializer_range",
        "use_cache",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "attention_dropout",
        "cache_implementation",  # generate's cache class; the math is the same
    }
)
# read by the common fields (hf_config.common_fields)
COMMON = frozenset(
    {
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "max_position_embeddings",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "rope_parameters",
    }
)
GEMMA2_KEYS = COMMON | {
    "hidden_activation",
    "hidden_act",
    "query_pre_attn_scalar",
    "sliding_window",
    "layer_types",
    "final_logit_softcapping",
    "attn_logit_softcapping",
    "use_bidirectional_attention",
    "attention_bias",
}
# transformers 5 saves _sliding_window_pattern beside layer_types (which it derives from)
GEMMA3_KEYS = GEMMA2_KEYS | {
    "rope_local_base_freq",
    "sliding_window_pattern",
    "_sliding_window_pattern",
}
PHI3_KEYS = COMMON | {
    "hidden_act",
    "original_max_position_embeddings",
    "partial_rotary_factor",
    "sliding_window",
    "resid_pdrop",
    "embd_pdrop",
    "attention_bias",
}


def refuse_unknown(cfg: HFConfig, known: frozenset[str], family: str) -> None:
    """Raise cfg.refuse for the first key neither in `known` nor in NO_MATH."""
    for key in cfg.raw:
        if key not in known and key not in NO_MATH:
            raise cfg.refuse(key, f"{family} does not know this field")


def gemma_activation(cfg: HFConfig, family: str) -> None:
    """Gemma reads hidden_activation (gelu_pytorch_tanh); a contradicting hidden_act,
    which transformers would ignore, is refused as ambiguous."""
    act = cfg.get("hidden_activation", "gelu_pytorch_tanh")
    if act != "gelu_pytorch_tanh":
        raise cfg.refuse("hidden_activation", f"{family} is built with gelu_pytorch_tanh")
    if cfg.get("hidden_act", act) != act:
        raise cfg.refuse("hidden_act", "contradicts hidden_activation, which transformers uses")
