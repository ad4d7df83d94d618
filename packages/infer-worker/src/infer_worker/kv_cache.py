"""The paged KV cache: one preallocated tensor of fixed-size blocks per layer."""

from __future__ import annotations

import torch

from .config import ModelConfig
from .kv_quant import SCALE_DTYPE


class KVCache:
    """Keys and values of every layer, in blocks of block_size token slots.

    Layout per layer: key_cache[layer] and value_cache[layer] are
    [num_blocks, block_size, num_kv_heads, head_dim]; slot s is
    block s // block_size, offset s % block_size. With dtype torch.int8 the
    pages hold quantized rows and key_scale / value_scale [layers, num_blocks,
    block_size, num_kv_heads] their scales (kv_quant.py); otherwise both are None.
    Blocks are handed out by the scheduler; this class never allocates or frees them.
    """

    @staticmethod
    def bytes_per_token(config: ModelConfig, dtype: torch.dtype) -> int:
        """Bytes one token slot takes across all layers (keys and values, int8 scales included)."""
        row = config.head_dim * _element_size(dtype)
        if dtype == torch.int8:
            row += _element_size(SCALE_DTYPE)
        return 2 * config.num_layers * config.num_kv_heads * row

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
        self.key_scale: torch.Tensor | None = None
        self.value_scale: torch.Tensor | None = None
        if dtype == torch.int8:
            self.key_scale = torch.zeros(shape[:-1], dtype=SCALE_DTYPE, device=self.device)
            self.value_scale = torch.zeros(shape[:-1], dtype=SCALE_DTYPE, device=self.device)
        self.bytes_per_slot = self.bytes_per_token(config, dtype)
        # views made once: layer() is called by every layer of every step
        self._layers = list(zip(self.key_cache.unbind(0), self.value_cache.unbind(0), strict=True))
        self._scales: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if self.key_scale is not None and self.value_scale is not None:
            pairs = zip(self.key_scale.unbind(0), self.value_scale.unbind(0), strict=True)
            self._scales = list(pairs)

    @property
    def num_slots(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def num_bytes(self) -> int:
        """Bytes the pages (and int8 scales) of every layer take."""
        return self.num_slots * self.bytes_per_slot

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values) of one layer, each [num_blocks, block_size, kv_heads, head_dim]."""
        return self._layers[index]

    def scales(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(key, value) row scales of one layer [num_blocks, block_size, kv_heads], or None."""
        return None if self._scales is None else self._scales[index]


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
