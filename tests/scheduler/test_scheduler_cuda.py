"""The engine on CUDA (skipped cleanly where there is no CUDA device)."""

from __future__ import annotations

import pytest
import torch

from infer_scheduler import LLM
from infer_scheduler.options import EngineOptions, num_kv_blocks

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


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
