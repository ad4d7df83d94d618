"""The engine on CUDA (skipped cleanly where there is no CUDA device).

Against transformers: greedy tokens of the engine are checked by teacher
forcing, i.e. transformers runs prompt + our tokens once and every token we
chose must be its argmax up to a tolerance (exactly for nearly all in
float32). This holds even where a near-tie flips one token and the two
greedy runs diverge afterwards.
"""

from __future__ import annotations

import pytest
import torch

from infer_scheduler import LLM
from infer_scheduler.options import EngineOptions, num_kv_blocks

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

PROMPTS = [[100 + 7 * i + j for j in range(5 + 9 * i)] for i in range(8)]


def test_memory_fraction_sizes_the_cache() -> None:
    device = torch.device("cuda")
    small = num_kv_blocks(EngineOptions(gpu_memory_utilization=0.5), 1 << 16, device)
    large = num_kv_blocks(EngineOptions(gpu_memory_utilization=0.9), 1 << 16, device)
    assert large > small >= 16
    assert num_kv_blocks(EngineOptions(kv_cache_tokens=1000), 1 << 16, device) == 63


def test_generates_on_cuda_like_on_cpu(tiny_dir) -> None:
    prompts = [[100 + i, 200 + i, 300 + i, 400 + i] * (i + 1) for i in range(8)]
    gpu = LLM(str(tiny_dir), device="cuda", dtype="float32", gpu_memory_utilization=0.3)
    cpu = LLM(str(tiny_dir), device="cpu", dtype="float32", kv_cache_tokens=4096)
    assert gpu.engine.pool.num_blocks > 16
    on_gpu = gpu.generate(prompts, max_tokens=8, ignore_eos=True)
    on_cpu = cpu.generate(prompts, max_tokens=8, ignore_eos=True)
    same = sum(a.token_ids == b.token_ids for a, b in zip(on_gpu, on_cpu, strict=True))
    assert same >= 6  # float32 kernels differ slightly; nearly all greedy runs agree
    bf16 = LLM(str(tiny_dir), device="cuda", dtype="bfloat16", kv_cache_tokens=4096)
    outs = bf16.generate(prompts, max_tokens=8, ignore_eos=True)
    assert all(len(o.token_ids) == 8 for o in outs) and bf16.engine.leaked_blocks() == 0


@pytest.mark.parametrize(
    ("dtype", "torch_dtype", "max_gap", "min_exact"),
    [("float32", torch.float32, 1e-3, 0.95), ("bfloat16", torch.bfloat16, 1.5, 0.75)],
)
def test_engine_greedy_matches_transformers(
    tiny_dir, dtype: str, torch_dtype: torch.dtype, max_gap: float, min_exact: float
) -> None:
    """Batched greedy decoding (prefill chunks of mixed length, 16 tokens each) vs transformers."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(
        tiny_dir, dtype=torch_dtype, attn_implementation="sdpa"
    )
    hf = hf.to("cuda").eval()
    llm = LLM(str(tiny_dir), device="cuda", dtype=dtype, kv_cache_tokens=4096, max_batch_tokens=64)
    outs = llm.generate(PROMPTS, max_tokens=16, ignore_eos=True)
    gaps, spreads = [], []
    for prompt, out in zip(PROMPTS, outs, strict=True):
        assert len(out.token_ids) == 16
        ids = torch.tensor([prompt + out.token_ids], device="cuda")
        with torch.no_grad():
            logits = hf(ids).logits[0, len(prompt) - 1 : -1].float()
        ours = torch.tensor(out.token_ids, device="cuda")
        best = logits.max(-1).values
        gaps.append(best - logits.gather(1, ours[:, None])[:, 0])
        spreads.append(best - logits.min(-1).values)
    gap = torch.cat(gaps)
    assert torch.isfinite(gap).all() and torch.cat(spreads).min().item() > 10 * max_gap
    assert gap.max().item() <= max_gap, f"worst logit gap {gap.max().item():.4g}"
    assert (gap == 0).float().mean().item() >= min_exact
    assert llm.engine.leaked_blocks() == 0
