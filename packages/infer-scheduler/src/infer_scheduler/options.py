"""Engine options and the KV cache sizing rule.

Sizing: `kv_cache_tokens` wins when given. Otherwise on CUDA the cache takes
`gpu_memory_utilization` of the device's total memory minus what is already
in use (the weights) and an activation reserve; on the CPU it takes 10% of
the available RAM, capped at 131072 tokens. Either way at least 16 blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

from infer_worker.compile import DEFAULT_BUCKETS

CPU_MEMORY_FRACTION = 0.10
CPU_MAX_TOKENS = 131072
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

    def batch_tokens_for(self, device: torch.device) -> int:
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return 8192 if device.type == "cuda" else 512


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
        budget = psutil.virtual_memory().available * CPU_MEMORY_FRACTION
        tokens = min(int(budget // bytes_per_token), CPU_MAX_TOKENS)
    return max(MIN_BLOCKS, tokens // bs)
