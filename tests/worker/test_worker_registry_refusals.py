"""Every config field that changes the math and is not built is refused by name:
ModelConfig.from_hf raises ModelLoadError naming it, load_model too, and `infer serve`
ends with one line naming it and a non-zero exit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infer_worker import ModelConfig, ModelLoadError, load_model


def base(arch: str = "LlamaForCausalLM") -> dict[str, Any]:
    return {
        "architectures": [arch],
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }


REFUSED = [
    ("architectures", {"architectures": ["GPT2LMHeadModel"]}),
    ("architectures", {"architectures": ["MixtralForCausalLM"]}),
    ("hidden_act", {"hidden_act": "quick_gelu"}),
    ("mrope", {"rope_scaling": {"rope_type": "mrope", "mrope_section": [1, 1]}}),
    ("factor", {"rope_scaling": {"rope_type": "yarn"}}),
    ("factor", {"rope_scaling": {"rope_type": "dynamic", "factor": -1}}),
    ("num_local_experts", {"num_local_experts": 8}),
    ("num_experts", {"num_experts": 4}),
    ("moe_intermediate_size", {"moe_intermediate_size": 16}),
    ("kv_lora_rank", {"kv_lora_rank": 16}),
    ("q_lora_rank", {"q_lora_rank": 16}),
    ("alibi", {"alibi": True}),
    ("no_rope_layers", {"no_rope_layers": [1, 0]}),
    ("attention_chunk_size", {"attention_chunk_size": 8}),
    ("partial_rotary_factor", {"partial_rotary_factor": 0.5}),
    ("embedding_multiplier", {"embedding_multiplier": 12.0}),
    ("residual_multiplier", {"residual_multiplier": 0.2}),
    ("logits_scaling", {"logits_scaling": 4.0}),
    ("rope_interleaved", {"rope_interleaved": True}),
]


@pytest.mark.parametrize(
    ("field", "changes"), REFUSED, ids=[f"{f}-{i}" for i, (f, _) in enumerate(REFUSED)]
)
def test_unbuilt_field_is_refused_by_name(field: str, changes: dict[str, Any]) -> None:
    with pytest.raises(ModelLoadError) as info:
        ModelConfig.from_hf({**base(), **changes}, "config.json")
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("arch", "field", "changes"),
    [
        ("MistralForCausalLM", "layer_types", {"layer_types": ["full_attention"] * 2}),
        ("Qwen2ForCausalLM", "layer_types", {"layer_types": ["chunked_attention"] * 2}),
        ("Qwen3ForCausalLM", "layer_types", {"layer_types": ["full_attention"]}),
    ],
)
def test_family_specific_fields_are_refused(arch: str, field: str, changes: dict) -> None:
    with pytest.raises(ModelLoadError) as info:
        ModelConfig.from_hf({**base(arch), **changes}, "config.json")
    assert field in str(info.value)


def test_built_fields_parse_as_transformers_reads_them() -> None:
    qwen2 = ModelConfig.from_hf(
        {
            **base("Qwen2ForCausalLM"),
            "num_hidden_layers": 4,
            "use_sliding_window": True,
            "sliding_window": 8,
            "max_window_layers": 2,
        },
        "c",
    )
    assert [qwen2.window_for(i) for i in range(4)] == [None, None, 8, 8]
    assert qwen2.attention_bias and not qwen2.o_proj_bias
    off = ModelConfig.from_hf({**base("Qwen2ForCausalLM"), "sliding_window": 8}, "c")
    assert off.window_for(1) is None  # use_sliding_window false: transformers drops it
    mistral = ModelConfig.from_hf({**base("MistralForCausalLM"), "sliding_window": 4096}, "c")
    assert mistral.window_for(0) == mistral.window_for(1) == 4096
    qwen3 = ModelConfig.from_hf({**base("Qwen3ForCausalLM"), "head_dim": 16}, "c")
    assert qwen3.qk_norm and qwen3.head_dim == 16
    llama = ModelConfig.from_hf({**base(), "attention_bias": True, "mlp_bias": True}, "c")
    assert llama.attention_bias and llama.o_proj_bias and llama.mlp_bias


def _model_dir(tmp_path: Path, **changes: Any) -> Path:
    from registry_models import write_tokenizer

    raw = {**base(), "vocab_size": 49152, **changes}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    return write_tokenizer(tmp_path)


def test_load_model_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(str(_model_dir(tmp_path, hidden_act="quick_gelu")))
    assert "hidden_act" in str(info.value) and "config.json" in str(info.value)


def test_infer_serve_prints_the_refusal_as_one_line(tmp_path: Path) -> None:
    model = _model_dir(tmp_path, num_local_experts=8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "infer"),
            "serve",
            "--port",
            str(port),
            "--model",
            str(model),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("infer serve:")]
    assert len(errors) == 1, result.stderr
    assert "num_local_experts" in errors[0]
