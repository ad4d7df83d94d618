"""The paged KV cache: one preallocated tensor of fixed-size blocks per layer."""

from __future__ import annotations

import torch

from .config import ModelConfig


class KVCache:
    """Keys and values of every layer, in blocks of block_size token slots.

    Layout per layer: key_cache[layer] and value_cache[layer] are
    [num_blocks, block_size, num_kv_heads, head_dim]; slot s is
    block s // block_size, offset s % block_size. Blocks are handed out by
    the scheduler; this class never allocates or frees them.
    """

    @staticmethod
    def bytes_per_token(config: ModelConfig, dtype: torch.dtype) -> int:
        """Bytes one token slot takes across all layers (keys and values)."""
        elem = torch.empty((), dtype=dtype).element_size()
        return 2 * config.num_layers * config.num_kv_heads * config.head_dim * elem

    def __init__(
        self,
        config: ModelConfig,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError(
                f"num_blocks and block_size must be positive, got {num_blocks}, {block_size}"
            )
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.dtype = dtype
        self.device = torch.device(device)
        shape = (config.num_layers, num_blocks, block_size, config.num_kv_heads, config.head_dim)
        self.key_cache = torch.zeros(shape, dtype=dtype, device=self.device)
        self.value_cache = torch.zeros(shape, dtype=dtype, device=self.device)

    @property
    def num_slots(self) -> int:
        return self.num_blocks * self.block_size

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values) of one layer, each [num_blocks, block_size, kv_heads, head_dim]."""
        return self.key_cache[index], self.value_cache[index]
