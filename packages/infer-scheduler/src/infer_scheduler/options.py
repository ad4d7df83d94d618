"""Engine options and the KV cache sizing rule.

Sizing: `kv_cache_tokens` wins when given. Otherwise on CUDA the cache takes
`gpu_memory_utilization` of the device's total memory minus what is already
in use (the weights) and an activation reserve; on the CPU it takes the RAM
psutil reports available when the engine starts (the weights are loaded by then,
so their bytes are already out of it) minus `memory_headroom_gb` (activations,
the tokenizer, the gateway and everything else on the machine), capped at
131072 tokens. Either way at least 16 blocks. `bytes_per_token` counts what
one token slot takes in the chosen `--kv-cache-dtype` (int8 pages with their
row scales take ~half of bf16's), so the same memory holds ~2x the tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psutil
import torch

from infer_worker.compile import DEFAULT_BUCKETS

log = logging.getLogger("infer_scheduler")

CPU_MAX_TOKENS = 131072
DEFAULT_HEADROOM_GB = 2.0
KV_CACHE_DTYPES = ("auto", "bf16", "bfloat16", "float32", "int8")
MIN_BLOCKS = 16
COMPILE_MODES = ("off", "auto", "on")


@dataclass
class EngineOptions:
    """Tunables of the engine core (the CLI's flags)."""

    max_batch_tokens: int | None = None  # None: 512 on CPU, 8192 on CUDA
    max_running: int = 64
    kv_cache_tokens: int | None = None
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    enable_prefix_cache: bool = True
    queue_capacity: int = 100
    cuda_graphs: bool = True  # on CUDA, decode steps replay captured graphs (cuda_graphs.py)
    compile: str = "off"  # CPU: torch.compile'd decode steps (off, auto: background, on: at start)
    compile_buckets: tuple[int, ...] = DEFAULT_BUCKETS  # decode batch sizes compiled (padded up)
    memory_headroom_gb: float = DEFAULT_HEADROOM_GB  # CPU: RAM left free beside the KV cache
    kv_cache_dtype: str = "auto"  # auto: the model's; bf16 / float32 must equal it; or int8

    def __post_init__(self) -> None:
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be >= 1")
        if self.max_running < 1:
            raise ValueError("max_running must be >= 1")
        if self.kv_cache_tokens is not None and self.kv_cache_tokens < 1:
            raise ValueError("kv_cache_tokens must be >= 1")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        if self.block_size < 1:
            raise ValueError("block_size must be >= 1")
        if self.queue_capacity < 1:  # 0 would refuse every request as overloaded
            raise ValueError("queue_capacity must be >= 1")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}")
        if not self.compile_buckets or min(self.compile_buckets) < 1:
            raise ValueError("compile_buckets must be batch sizes >= 1")
        if self.memory_headroom_gb < 0:
            raise ValueError("memory_headroom_gb must be >= 0")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"kv_cache_dtype must be one of {', '.join(KV_CACHE_DTYPES)}")

    def kv_dtype_for(self, model_dtype: torch.dtype) -> torch.dtype:
        """The KV cache dtype: the model's, or int8; ValueError when it names another dtype."""
        if self.kv_cache_dtype == "int8":
            return torch.int8
        named = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "float32": torch.float32}
        wanted = named.get(self.kv_cache_dtype, model_dtype)
        if wanted != model_dtype:
            raise ValueError(
                f"--kv-cache-dtype {self.kv_cache_dtype}: the model runs in "
                f"{str(model_dtype).removeprefix('torch.')} and the cache must match it"
            )
        return wanted

    def batch_tokens_for(self, device: torch.device) -> int:
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return 8192 if device.type == "cuda" else 512


def check_kv_dtype(kv_dtype: torch.dtype, device: torch.device) -> None:
    """ValueError naming the combination when the paths this engine would run cannot read
    int8 KV pages: CUDA (the Triton kernel and CUDA graphs)."""
    if kv_dtype == torch.int8 and device.type != "cpu":
        raise ValueError(
            f"--kv-cache-dtype int8 on {device.type}: int8 KV pages are read by the CPU "
            "attention paths only (the Triton kernel and CUDA graphs read bf16 / float32 "
            "pages); use --kv-cache-dtype auto"
        )


def num_kv_blocks(options: EngineOptions, bytes_per_token: int, device: torch.device) -> int:
    """How many KV blocks to allocate on `device`."""
    bs = options.block_size
    if options.kv_cache_tokens is not None:
        return max(1, -(-options.kv_cache_tokens // bs))
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        reserve = 1 << 30  # activations, logits and allocator slack
        budget = total * options.gpu_memory_utilization - (total - free) - reserve
        tokens = int(budget // bytes_per_token)
    else:
        available = psutil.virtual_memory().available
        budget = available - options.memory_headroom_gb * 2**30
        tokens = min(max(0, int(budget // bytes_per_token)), CPU_MAX_TOKENS)
        blocks = max(MIN_BLOCKS, tokens // bs)
        log.info(
            "KV cache: %d tokens, %.2f GiB at %d bytes/token (%.2f GiB available after the "
            "weights, %.1f GiB headroom, cap %d tokens)",
            blocks * bs,
            blocks * bs * bytes_per_token / 2**30,
            bytes_per_token,
            available / 2**30,
            options.memory_headroom_gb,
            CPU_MAX_TOKENS,
        )
        return blocks
    return max(MIN_BLOCKS, tokens // bs)
