"""Sliding windows read from GGUF metadata (`<arch>.attention.sliding_window`), end to end:
a tiny random Mistral and Phi-3 with a window (12) shorter than every prompt, written as
an HF directory and as a GGUF file of the same weights; infer's batched greedy tokens
from the GGUF over 48 tokens equal transformers' float32 tokens from the HF directory
(transformers' own GGUF reader drops these windows, so it is not the reference).

llama.cpp's converter writes the key for Phi-3 (0 when there is none) but not for
Mistral (a `llama` file); the test writer writes it for both, and infer honours it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from family_models import LONGROPE_ORIGINAL, prompts, write_family
from gguf_families import gguf_and_reference_greedy, gguf_vocab_of_default, write_hf_model

from infer_worker import load_model
from infer_worker.gguf_loader import GGUFFile
from infer_worker.testing_gguf import write_hf_as_gguf

NEW_TOKENS = 48
WINDOW = 12


def _mistral(path: Path) -> Path:
    return write_hf_model(path, "mistral", head_dim=16, sliding_window=WINDOW)


def _phi3(path: Path) -> Path:  # with longrope and partial rotary (family_models.phi3_config)
    return write_family(path, "phi3", sliding_window=WINDOW)


CASES = {
    # the file says llama; the window makes it transformers' MistralForCausalLM
    "mistral": (_mistral, [30, 50, 17], "llama.attention.sliding_window", "MistralForCausalLM"),
    # prompts on both sides of the longrope switch
    "phi3": (_phi3, [30, 20, LONGROPE_ORIGINAL + 1], "phi3.attention.sliding_window", None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gguf_window_matches_the_hf_directory(name: str, tmp_path: Path) -> None:
    write, lengths, key, architecture = CASES[name]
    hf_dir = write(tmp_path / name)
    path = write_hf_as_gguf(tmp_path / f"{name}.gguf", hf_dir, gguf_vocab_of_default())
    assert GGUFFile(path).meta[key] == WINDOW
    config = load_model(str(path)).config
    assert [config.window_for(i) for i in range(config.num_layers)] == [WINDOW] * 6
    if architecture:
        assert config.architecture == architecture
    got, expected = gguf_and_reference_greedy(hf_dir, path, prompts(49152, lengths), NEW_TOKENS)
    assert len({t for e in expected for t in e}) > 8  # real continuations
    assert got == expected
