"""Gemma 2, Gemma 3 (text) and Phi-3 produce transformers' float32 greedy tokens, or are
refused by name.

Each family is a tiny random-weight model built with transformers (family_models.py),
every special feature on, prompts longer than the sliding window; Phi-3's longrope
prompts sit on both sides of the switch length and some cross it while generating.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from family_models import (
    LONGROPE_ORIGINAL,
    prompts,
    reference_greedy,
    write_config,
    write_family,
)
from served_greedy import served_greedy
from transformers import AutoConfig, AutoModelForCausalLM

from infer_scheduler import LLM
from infer_worker import AttentionMetadata, ModelLoadError, load_model
from infer_worker.config import ModelConfig

NEW_TOKENS = 48
# Phi-3: below, at, just above and well above the switch length; 30 and 20 cross it
# while generating. Gemma: every prompt is longer than the sliding window.
LENGTHS = {
    "gemma2": [30, 50, 17],
    "gemma3": [30, 50, 17],
    "phi3": [30, 50, 20, LONGROPE_ORIGINAL, LONGROPE_ORIGINAL + 1],
}


@pytest.fixture(scope="module")
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ifam-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module", params=sorted(LENGTHS))
def family(request: pytest.FixtureRequest, run_dir: Path) -> dict:
    """A family's directory, its prompts and transformers' greedy tokens for them."""
    name = request.param
    directory = write_family(run_dir / name, name)
    ids = prompts(49152, LENGTHS[name])
    return {
        "name": name,
        "dir": directory,
        "prompts": ids,
        "reference": reference_greedy(directory, ids, NEW_TOKENS),
    }


def test_offline_greedy_matches_transformers(family: dict) -> None:
    # 24-token steps: long prompts are chunked and mixed with the others' decodes
    llm = LLM(str(family["dir"]), device="cpu", dtype="float32", max_batch_tokens=24, block_size=8)
    outs = llm.generate(family["prompts"], max_tokens=NEW_TOKENS, ignore_eos=True)
    for out, expected in zip(outs, family["reference"], strict=True):
        assert len(set(expected)) > 8  # a real continuation, not one repeated token
        assert out.token_ids == expected


def test_http_greedy_matches_transformers(family: dict, run_dir: Path) -> None:
    name = family["name"]
    texts, completion_tokens = served_greedy(
        str(family["dir"]), name, family["prompts"], NEW_TOKENS, f"ipc://{run_dir}/{name}.ipc"
    )
    tokenizer = load_model(str(family["dir"])).tokenizer
    expected = [tokenizer.decode(r, skip_special_tokens=True) for r in family["reference"]]
    assert texts == expected
    assert completion_tokens == NEW_TOKENS * len(family["prompts"])


def test_gemma_tied_embeddings_logits_match(tmp_path: Path) -> None:
    """Real Gemma checkpoints tie lm_head to the embedding (no lm_head.weight stored)."""
    for name in ("gemma2", "gemma3"):
        directory = write_family(tmp_path / name, name, tie_word_embeddings=True)
        ids = prompts(49152, [37], seed=4)[0]
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        with torch.no_grad():
            expected = model(torch.tensor([ids])).logits[0]
        bundle = load_model(str(directory))
        assert bundle.model.lm_head is None
        from infer_worker import KVCache

        cache = KVCache(bundle.config, 16, 8, torch.float32, "cpu")
        table = [list(range(1, 6))]
        rows = []
        for start in range(0, len(ids), 9):  # chunked prefill across the window
            piece = ids[start : start + 9]
            meta = AttentionMetadata.build([len(piece)], [start + len(piece)], table, 8)
            hidden = bundle.model(
                torch.tensor(piece), torch.arange(start, start + len(piece)), cache, meta
            )
            rows.append(bundle.model.compute_logits(hidden))
        assert (torch.cat(rows) - expected).abs().max().item() < 1e-4


REFUSALS = [
    ("gemma2", {"use_bidirectional_attention": True}, "use_bidirectional_attention"),
    ("gemma2", {"hidden_activation": "gelu"}, "hidden_activation"),
    ("gemma2", {"attention_bias": True}, "attention_bias"),
    ("gemma2", {"some_new_knob": 1}, "some_new_knob"),
    ("gemma2", {"hidden_act": "silu"}, "hidden_act"),
    (
        "gemma3",
        {"rope_parameters": {"sliding_attention": {"rope_type": "linear", "factor": 2.0}}},
        "rope_parameters",
    ),
    ("phi3", {"partial_rotary_factor": 0.3125}, "partial_rotary_factor"),
    ("gemma3", {"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
    ("gemma3", {"layer_types": ["chunked_attention"] * 6}, "layer_types"),
    ("gemma3", {"architectures": ["Gemma3ForConditionalGeneration"]}, "Gemma3ForConditional"),
    ("phi3", {"hidden_act": "gelu_new"}, "hidden_act"),
    ("phi3", {"rope_scaling": {"type": "yarn", "factor": 2.0}}, "yarn"),
    ("phi3", {"rope_scaling": {"type": "longrope", "short_factor": [1.0]}}, "short_factor"),
    ("phi3", {"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "dynamic"),
]


@pytest.mark.parametrize(("name", "change", "named"), REFUSALS)
def test_unimplemented_fields_are_refused_by_name(
    tmp_path: Path, name: str, change: dict, named: str
) -> None:
    write_config(tmp_path, name, **change)  # refused before any weight is read
    with pytest.raises(ModelLoadError, match=named):
        load_model(str(tmp_path))


@pytest.mark.parametrize("name", sorted(LENGTHS))
def test_transformers5_saved_config_reads_the_same(tmp_path: Path, name: str) -> None:
    """The Hub's transformers-4 form and transformers 5's save_pretrained form (nested
    rope_parameters, explicit layer_types) give the same ModelConfig."""
    raw = write_config(tmp_path / "hub", name)
    AutoConfig.from_pretrained(tmp_path / "hub").save_pretrained(tmp_path / "v5")
    saved = json.loads((tmp_path / "v5" / "config.json").read_text())
    assert "rope_parameters" in saved and "rope_theta" not in saved
    hub = ModelConfig.from_hf(raw, "hub")
    assert vars(ModelConfig.from_hf(saved, "v5")) == vars(hub)
    assert hub.sliding_window is not None and hub.rotary_dim <= hub.head_dim
