"""How one forward pass computes linears, rotary tables and attention (the eager step).

Layer code calls step.linear(module, x), step.rope(name) and
step.attend(layer, options, q, k, v) instead of doing these itself, so the
same layer code runs eagerly (EagerStep: the module's weight formats, the
paged attention of attention.py over AttentionMetadata) and inside the
compiled decode graph (decode_graph.GraphStep: traceable ops only).
"""

from __future__ import annotations

import torch

from ..attention import paged_attention
from ..kv_cache import KVCache
from ..metadata import AttentionMetadata
from .attention import LayerAttention
from .layers import Linear
from .rotary import RotaryEmbedding


class EagerStep:
    """One eager forward of flattened tokens at `positions` over `kv_cache` described by meta."""

    def __init__(
        self,
        rotaries: dict[str, RotaryEmbedding],
        positions: torch.Tensor,
        kv_cache: KVCache,
        meta: AttentionMetadata,
        dtype: torch.dtype,
    ) -> None:
        self.rotaries = rotaries
        self.positions = positions
        self.kv_cache = kv_cache
        self.meta = meta
        self.dtype = dtype
        self._tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def linear(module: Linear, x: torch.Tensor) -> torch.Tensor:
        return module.forward(x)  # no hooks on these modules: skip nn.Module.__call__

    @staticmethod
    def logits(model, x: torch.Tensor) -> torch.Tensor:
        return model.eager_logits(x)

    def rope(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) [T, 1, rotary_dim] of the table `name`, computed once per step."""
        table = self._tables.get(name)
        if table is None:
            table = self.rotaries[name].lookup(self.positions, self.meta, self.dtype)
            self._tables[name] = table
        return table

    def attend(
        self,
        layer: int,
        options: LayerAttention,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
    ) -> torch.Tensor:
        key_cache, value_cache = self.kv_cache.layer(layer)
        return paged_attention(
            q,
            k,
            v,
            key_cache,
            value_cache,
            self.meta,
            options.scale,
            window=options.window,
            softcap=options.softcap,
            scales=self.kv_cache.scales(layer),
        )
