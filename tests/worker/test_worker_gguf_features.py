"""Features transformers' GGUF reader drops but llama.cpp's files carry: Phi-3 partial
rotary and longrope (factor tensors, attention factor), Gemma 3's local rope base, layer
pattern and linear scaling on global layers. infer loading the GGUF gives the greedy
tokens transformers gives for the HF directory it was written from."""

from __future__ import annotations

from pathlib import Path

import pytest
from family_models import HEAD_DIM, LONGROPE_ORIGINAL, prompts, reference_greedy, write_family
from gguf_families import gguf_vocab_of_default

from infer_scheduler import LLM
from infer_worker import load_model
from infer_worker.testing_gguf import write_hf_as_gguf

NEW_TOKENS = 48
CASES = {
    # partial rotary 0.75, longrope short/long factors; prompts on both sides of the switch
    "phi3": ({"sliding_window": None}, [30, 20, LONGROPE_ORIGINAL, LONGROPE_ORIGINAL + 1]),
    # local base 1000, 2 local : 1 global, linear x4 on global layers; llama.cpp's query scale
    "gemma3": (
        {"sliding_window": 512, "final_logit_softcapping": None, "query_pre_attn_scalar": HEAD_DIM},
        [30, 50, 17],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gguf_features_match_the_hf_directory(name: str, tmp_path: Path) -> None:
    changes, lengths = CASES[name]
    hf_dir = write_family(tmp_path / name, name, **changes)
    path = write_hf_as_gguf(tmp_path / f"{name}.gguf", hf_dir, gguf_vocab_of_default())
    config = load_model(str(path)).config
    if name == "phi3":
        assert config.rotary_dim == int(HEAD_DIM * 0.75)
        assert config.rope_scaling["rope_type"] == "longrope"
    ids = prompts(49152, lengths)
    expected = reference_greedy(hf_dir, ids, NEW_TOKENS)
    llm = LLM(str(path), device="cpu", dtype="float32", max_batch_tokens=24, block_size=8)
    outs = llm.generate(ids, max_tokens=NEW_TOKENS, ignore_eos=True)
    assert [o.token_ids for o in outs] == expected
