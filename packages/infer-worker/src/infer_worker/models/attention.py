"""The attention front of a decoder layer: projections, optional q/k norm, rotary, attend.

Per-layer options (LayerAttention): the softmax scale, a sliding window (the
query at position p sees keys at positions > p - window, as transformers'
sliding-window mask), an attention-logit soft-cap (tanh(s / cap) * cap before
the softmax) and which rotary table the layer uses. The attend itself is the
step's (step.py): the paged kernels in eager, a dispatcher op in the compiled
decode graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import fused_cpu
from .layers import Linear, RMSNorm
from .rotary import apply_rotary


@dataclass(frozen=True)
class LayerAttention:
    """What one layer's attention does beyond plain causal softmax(q k^T * scale) v."""

    scale: float
    window: int | None = None  # None: full causal attention
    softcap: float | None = None  # None: no attention-logit soft-capping
    rope: str = "default"  # key of the model's rotary table


class AttentionFront(nn.Module):
    """qkv_proj = [q; k; v] rows, then (q_norm, k_norm per head), rotary, attend, o_proj.

    rotary_dim < head_dim rotates only the first rotary_dim features of each head.
    """

    def __init__(
        self,
        layer_index: int,
        hidden: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        options: LayerAttention,
        *,
        qkv_bias: bool = False,
        o_bias: bool = False,
        qk_norm_eps: float | None = None,
        rotary_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.q_size = num_heads * head_dim
        self.kv_size = num_kv_heads * head_dim
        self.options = options
        self.scale = options.scale
        self.rotary_dim = rotary_dim or head_dim
        self.split_sizes = [self.q_size, self.kv_size, self.kv_size]
        self.qkv_proj = Linear(hidden, self.q_size + 2 * self.kv_size, bias=qkv_bias)
        self.o_proj = Linear(self.q_size, hidden, bias=o_bias)
        self.q_norm = self.k_norm = None
        if qk_norm_eps is not None:
            self.q_norm = RMSNorm(head_dim, qk_norm_eps)
            self.k_norm = RMSNorm(head_dim, qk_norm_eps)

    def forward(self, x: torch.Tensor, step) -> torch.Tensor:
        tokens = x.shape[0]
        qkv = step.linear(self.qkv_proj, x)
        q, k, v = qkv.split_with_sizes(self.split_sizes, dim=-1)
        q = q.view(tokens, self.num_heads, self.head_dim)
        k = k.view(tokens, self.num_kv_heads, self.head_dim)
        v = v.view(tokens, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q = self.q_norm(q.reshape(-1, self.head_dim)).view_as(q)
            k = self.k_norm(k.reshape(-1, self.head_dim)).view_as(k)
        q, k = self._rotate(q, k, *step.rope(self.options.rope))
        out = step.attend(self.layer_index, self.options, q, k, v)
        return step.linear(self.o_proj, out.reshape(tokens, self.q_size))

    def _rotate(self, q, k, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rotary_dim == self.head_dim:
            return fused_cpu.rotary(q, k, cos, sin) or apply_rotary(q, k, cos, sin)
        r = self.rotary_dim
        q_rot, k_rot = apply_rotary(q[..., :r], k[..., :r], cos, sin)
        return torch.cat((q_rot, q[..., r:]), -1), torch.cat((k_rot, k[..., r:]), -1)
