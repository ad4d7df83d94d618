"""Dynamic NTK rope, per sequence, as transformers' generate computes it: each forward
recomputes the frequencies for its last position + 1 once that passes
max_position_embeddings (64 here), and cached keys keep the rotation they were written
with. A tiny random Llama gives transformers' float32 greedy tokens over 48 tokens with
a prompt longer than 64 prefilled in 24-token chunks, a prompt whose generation crosses
64, and a short prompt that never does, all batched; also when the KV cache is so small
that sequences are preempted and recomputed. The prefix cache is off for such models."""

from __future__ import annotations

import pytest
from family_models import prompts, reference_greedy
from gguf_families import write_hf_model
from registry_models import write_tokenizer

from infer_scheduler import LLM

NEW_TOKENS = 48
ORIGINAL = 64
LENGTHS = [70, 30, 8]  # prefill past 64 / crosses 64 while generating / stays below


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = write_tokenizer(
        write_hf_model(
            tmp_path_factory.mktemp("dyn") / "llama",
            "llama",
            head_dim=16,
            max_position_embeddings=ORIGINAL,
            rope_scaling={"rope_type": "dynamic", "factor": 4.0},
        )
    )
    ids = prompts(49152, LENGTHS)
    # transformers' rotary keeps its frequencies between calls: a fresh model per prompt
    expected = [reference_greedy(path, [p], NEW_TOKENS)[0] for p in ids]
    return {"path": path, "prompts": ids, "expected": expected}


@pytest.mark.parametrize("kv_cache_tokens", [None, 128])
def test_chunked_prefill_decode_and_recompute_match_transformers(
    model: dict, kv_cache_tokens: int | None
) -> None:
    llm = LLM(
        str(model["path"]),
        device="cpu",
        dtype="float32",
        max_batch_tokens=24,
        block_size=8,
        kv_cache_tokens=kv_cache_tokens,
    )
    outs = llm.generate(model["prompts"], max_tokens=NEW_TOKENS, ignore_eos=True)
    assert all(len(set(e)) > 8 for e in model["expected"])  # real continuations
    assert [o.token_ids for o in outs] == model["expected"]
    # 128 cache tokens cannot hold the three sequences (70 + 30 + 8 + 3 * 48)
    assert (llm.engine.scheduler.preemptions > 0) == (kv_cache_tokens is not None)


def test_prefix_cache_is_off(model: dict) -> None:
    """A prefix written for a 30-token prompt (default frequencies) would be wrong for a
    74-token prompt sharing it (frequencies for 74): nothing is cached."""
    llm = LLM(str(model["path"]), device="cpu", dtype="float32", block_size=8)
    assert llm.engine.cache.cache is None
    first = model["prompts"][1]
    second = first[:24] + model["prompts"][0][:50]
    outs = [llm.generate([p], max_tokens=1, ignore_eos=True)[0] for p in (first, second)]
    assert [o.cached_tokens for o in outs] == [0, 0]
