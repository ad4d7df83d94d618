"""The prefix cache with LongRoPE (Phi-3): cached K/V are keyed by the factor set they were
rotated with (short while a sequence holds at most original_max_position_embeddings = 40
tokens, long beyond), so a prefix is reused only by a request that uses the same set.
A tiny random Phi-3 (longrope, partial rotary) gives transformers' float32 greedy tokens
for each request, served one after another on one engine:

- a 30-token prompt generating 48 tokens crosses 40: its short K/V go to the cache and it
  is recomputed with the long set, whose blocks go to the cache too;
- a short prompt sharing its first 24 tokens reuses those short blocks;
- a long prompt sharing 32 tokens with that one (in short blocks) and 24 with the first
  (in long blocks) reuses 24; a second long prompt extending it reuses its 48.
"""

from __future__ import annotations

from pathlib import Path

from family_models import LONGROPE_ORIGINAL, prompts, reference_greedy, write_family

from infer_scheduler import LLM


def test_cached_prefixes_are_reused_within_one_factor_set(tmp_path: Path) -> None:
    path = write_family(tmp_path / "phi3", "phi3", sliding_window=None)
    base, tail_a, tail_b = prompts(49152, [30, 30, 30], seed=4)
    short = base[:24] + tail_a[:4]
    long = short + tail_b[:20]
    cases = [  # (prompt, new tokens, cached tokens expected)
        (base, 48, 0),
        (short, 8, 24),
        (long, 8, 24),
        (long + tail_b[20:22], 8, 48),
    ]
    assert len(short) + 8 <= LONGROPE_ORIGINAL < len(long)
    llm = LLM(str(path), device="cpu", dtype="float32", max_batch_tokens=24, block_size=8)
    assert llm.engine.cache.cache is not None
    for prompt, new_tokens, cached in cases:
        out = llm.generate([prompt], max_tokens=new_tokens, ignore_eos=True)[0]
        assert out.token_ids == reference_greedy(path, [prompt], new_tokens)[0]
        assert out.cached_tokens == cached
