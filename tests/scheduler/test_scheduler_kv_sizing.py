"""KV cache sizing on the CPU (available RAM after the weights minus a headroom) and
--kv-cache-dtype (the model's dtype, or int8 at ~half the bytes per token)."""

from __future__ import annotations

import logging

import psutil
import pytest
import torch

from infer_scheduler.cli import build_parser
from infer_scheduler.options import CPU_MAX_TOKENS, MIN_BLOCKS, EngineOptions, num_kv_blocks

CPU = torch.device("cpu")
MIB = 1 << 20


def test_cpu_cache_takes_available_ram_minus_the_headroom(caplog) -> None:
    available_gib = psutil.virtual_memory().available / 2**30
    # leave ~1 GiB to the cache: 1 MiB per token -> ~1024 tokens (RAM moves a little meanwhile)
    options = EngineOptions(memory_headroom_gb=available_gib - 1, block_size=16)
    with caplog.at_level(logging.INFO, logger="infer_scheduler"):
        blocks = num_kv_blocks(options, MIB, CPU)
    assert 700 // 16 <= blocks <= 1400 // 16
    assert "KV cache:" in caplog.text and "headroom" in caplog.text
    # a headroom above what is available leaves the minimum; a small one hits the cap
    assert num_kv_blocks(EngineOptions(memory_headroom_gb=available_gib + 8), MIB, CPU) == (
        MIN_BLOCKS
    )
    assert num_kv_blocks(EngineOptions(memory_headroom_gb=0.5), 64, CPU) == CPU_MAX_TOKENS // 16
    # --kv-cache-tokens wins
    assert num_kv_blocks(EngineOptions(kv_cache_tokens=100), MIB, CPU) == 7


def test_headroom_flag_reaches_the_options() -> None:
    args = build_parser({}).parse_args(["--memory-headroom-gb", "3.5", "--kv-cache-dtype", "bf16"])
    assert args.memory_headroom_gb == 3.5 and args.kv_cache_dtype == "bf16"
    assert build_parser({}).parse_args([]).memory_headroom_gb == 2.0
    with pytest.raises(ValueError, match="memory_headroom_gb"):
        EngineOptions(memory_headroom_gb=-1)


def test_kv_cache_dtype_is_the_models_or_int8() -> None:
    assert EngineOptions(kv_cache_dtype="int8").kv_dtype_for(torch.bfloat16) == torch.int8
    assert EngineOptions(kv_cache_dtype="int8").kv_dtype_for(torch.float32) == torch.int8
    with pytest.raises(ValueError, match="kv_cache_dtype must be one of"):
        EngineOptions(kv_cache_dtype="fp8")
    assert EngineOptions().kv_dtype_for(torch.bfloat16) == torch.bfloat16
    assert EngineOptions(kv_cache_dtype="bf16").kv_dtype_for(torch.bfloat16) == torch.bfloat16
    assert EngineOptions(kv_cache_dtype="float32").kv_dtype_for(torch.float32) == torch.float32
    with pytest.raises(ValueError, match="--kv-cache-dtype bf16: the model runs in float32"):
        EngineOptions(kv_cache_dtype="bf16").kv_dtype_for(torch.float32)


def test_the_same_memory_holds_about_twice_the_tokens_in_int8() -> None:
    """SmolLM2-135M's shape: 30 layers, 3 kv heads of 64: 23040 bytes a token in bf16,
    11880 in int8 with a bf16 scale per row, so a budget holds 1.94x the tokens."""
    from infer_worker import KVCache
    from infer_worker.config import ModelConfig

    config = ModelConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
        num_heads=9, num_kv_heads=3, head_dim=64,
    )  # fmt: skip
    bf16 = KVCache.bytes_per_token(config, torch.bfloat16)
    int8 = KVCache.bytes_per_token(config, torch.int8)
    assert (bf16, int8) == (23040, 11880)
    # ~1 GiB left to the cache (below the cap either way; RAM moves a little meanwhile)
    available_gib = psutil.virtual_memory().available / 2**30
    budget = EngineOptions(memory_headroom_gb=available_gib - 1, block_size=16)
    tokens = {n: num_kv_blocks(budget, per, CPU) * 16 for n, per in (("bf16", bf16), ("i8", int8))}
    assert 30_000 < tokens["bf16"] < tokens["i8"] < CPU_MAX_TOKENS
    assert tokens["i8"] / tokens["bf16"] == pytest.approx(bf16 / int8, rel=0.15)
