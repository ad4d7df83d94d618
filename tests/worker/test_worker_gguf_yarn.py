"""YaRN rope scaling read from GGUF metadata (`rope.scaling.type` yarn, factor,
original_context_length, yarn_beta_fast/slow), end to end: a tiny random Llama written
as an HF directory and as a GGUF file of the same weights with llama.cpp's converter's
keys; infer's batched greedy tokens from the GGUF over 48 tokens equal transformers'
float32 tokens from the HF directory, with prompts longer than the original length."""

from __future__ import annotations

from pathlib import Path

from family_models import prompts
from gguf_families import gguf_and_reference_greedy, gguf_vocab_of_default, write_hf_model

from infer_worker import load_model
from infer_worker.gguf_loader import GGUFFile
from infer_worker.testing_gguf import write_hf_as_gguf

NEW_TOKENS = 48
YARN = {
    "rope_type": "yarn",
    "factor": 4.0,
    "original_max_position_embeddings": 32,
    "beta_fast": 16.0,
    "beta_slow": 2.0,
}


def test_gguf_yarn_matches_the_hf_directory(tmp_path: Path) -> None:
    hf_dir = write_hf_model(tmp_path / "llama", "llama", head_dim=16, rope_scaling=YARN)
    path = write_hf_as_gguf(tmp_path / "yarn.gguf", hf_dir, gguf_vocab_of_default())
    meta = GGUFFile(path).meta
    assert meta["llama.rope.scaling.type"] == "yarn"
    assert meta["llama.rope.scaling.original_context_length"] == 32
    assert load_model(str(path)).config.rope_scaling == YARN
    # 40 and 70 pass the original 32 at prefill; 9 while generating
    got, expected = gguf_and_reference_greedy(hf_dir, path, prompts(49152, [40, 70, 9]), NEW_TOKENS)
    assert len({t for e in expected for t in e}) > 8  # real continuations
    assert got == expected
