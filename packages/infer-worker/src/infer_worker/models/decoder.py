"""The decoder every family builds on: embeddings, layers, final norm, logits.

CausalLM.forward(input_ids, positions, kv_cache, meta) -> hidden [T, hidden]
(before the final norm); compute_logits(hidden rows) -> float32 logits. The
compiled decode graph (decode_graph.py) runs the same `hidden_states` and
`logits_from` with its own step, so eager and compiled share one definition.
A family changes the config (its module in this package) or, when the layer
structure differs, overrides `make_layer` / `embed` with its own modules.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..int4 import supported as int4_supported
from ..int8 import Int8Weight, pack_weight
from ..kv_cache import KVCache
from ..metadata import AttentionMetadata
from ..onednn_rows import packed_linear
from ..quant import kernels as group_kernels
from ..quant.weights import StackedWeight
from .attention import AttentionFront, LayerAttention
from .layers import GatedMLP, Linear, RMSNorm, drop_weight
from .rotary import RotaryEmbedding, rotary_for
from .step import EagerStep
from .weights import load_hf_weights


def layer_attention(config: ModelConfig, index: int) -> LayerAttention:
    """The attention options of layer `index` as the config states them."""
    scale = config.attention_scale or config.head_dim**-0.5
    return LayerAttention(
        scale=scale,
        window=config.window_for(index),
        softcap=config.attn_logit_softcapping,
        rope=config.rope_for(index),
    )


class DecoderLayer(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)) (pre-norm, as Llama)."""

    def __init__(self, config: ModelConfig, index: int) -> None:
        super().__init__()
        plus_one = config.norm_plus_one
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, plus_one)
        self.self_attn = AttentionFront(
            index,
            config.hidden_size,
            config.num_heads,
            config.num_kv_heads,
            config.head_dim,
            layer_attention(config, index),
            qkv_bias=config.attention_bias,
            o_bias=config.o_proj_bias,
            qk_norm_eps=config.rms_norm_eps if config.qk_norm else None,
            rotary_dim=config.rotary_dim,
        )
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, plus_one)
        self.mlp = GatedMLP(
            config.hidden_size, config.intermediate_size, config.hidden_act, config.mlp_bias
        )

    def forward(self, x: torch.Tensor, step) -> torch.Tensor:
        # forward() rather than __call__: no hooks here, and a decode step makes ~150 of
        # these calls, whose nn.Module.__call__ costs more than a small layer's kernels
        x = x + self.self_attn.forward(self.input_layernorm.forward(x), step)
        return x + self.mlp.forward(self.post_attention_layernorm.forward(x), step)


class CausalLM(nn.Module):
    """A decoder-only LM over the paged KV cache; both entry points run under inference_mode."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # an explicit weight skips the random init (slow, and the loader overwrites it)
        self.embed_tokens = nn.Embedding(
            config.vocab_size,
            config.hidden_size,
            _weight=torch.empty(config.vocab_size, config.hidden_size),
        )
        self.layers = nn.ModuleList(self.make_layer(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.norm_plus_one)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.rotaries = rotary_for(config)
        self.logits_int8: Int8Weight | None = None
        self.logits_packed: torch.Tensor | None = None
        self.embed_group: StackedWeight | None = None  # the embedding in a kernel format

    def make_layer(self, config: ModelConfig, index: int) -> nn.Module:
        return DecoderLayer(config, index)

    @property
    def rotary(self) -> RotaryEmbedding:
        """The default rotary table (every family has one)."""
        return self.rotaries["default"]

    @property
    def logits_weight(self) -> torch.Tensor:
        """The logits projection's weight: lm_head's, or the tied embedding's."""
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    @property
    def group_weights(self) -> bool:
        """True when weights are held in kernel formats only (no bf16 copy to quantize)."""
        return self.embed_group is not None or any(m.group is not None for m in self._linears())

    def use_embed_group(self, stack: StackedWeight) -> None:
        """Hold the embedding (and the tied logits projection) as `stack` only."""
        want = (self.config.vocab_size, self.config.hidden_size)
        if tuple(stack.shape) != want:
            raise KeyError(f"embedding of shape {tuple(stack.shape)}, expected {want}")
        self.embed_group = stack
        self.embed_tokens.weight = drop_weight(self.embed_tokens.weight)

    def weight_bytes(self) -> int:
        """Bytes of every weight as held: parameters, buffers aside, plus kernel formats."""
        total = sum(p.nbytes for p in self.parameters())
        groups = [m.group for m in self._linears() if m.group is not None]
        if self.embed_group is not None:
            groups.append(self.embed_group)
        return total + sum(g.nbytes() for g in groups)

    def _linears(self) -> list[Linear]:
        return [m for m in self.modules() if isinstance(m, Linear)]

    def _layer_linears(self) -> list[Linear]:
        return [m for m in self.modules() if isinstance(m, Linear) and m is not self.lm_head]

    def use_int8(self, max_rows: int) -> None:
        """Give every linear (and the logits projection) an int8 copy used for <= max_rows rows."""
        for module in self._layer_linears():
            module.use_int8(max_rows)
        self.logits_int8 = Int8Weight(self.logits_weight, max_rows)

    def use_int4(self) -> bool:
        """Give every layer linear (not the logits) an int4 copy for 1-2 row inputs, after
        use_int8; False (nothing changed) when a weight cannot be packed (int4.supported)."""
        linears = self._layer_linears()
        if not all(int4_supported(m.weight) for m in linears):
            return False
        for module in linears:
            module.use_int4()
        return True

    def use_wide(self, min_rows: int) -> None:
        """Give every layer linear a float32 copy used for inputs of >= min_rows rows (prefill)."""
        for module in self._layer_linears():
            module.use_wide(min_rows)

    def use_packed(self, batch_hint: int = 32) -> None:
        """Give every layer linear, and the logits projection, a oneDNN-prepacked weight
        (CPU bf16/fp32 only)."""
        for module in self._layer_linears():
            module.use_packed(batch_hint)
        self.logits_packed = pack_weight(self.logits_weight, batch_hint)

    def reset_rotary(self, device: torch.device | str) -> None:
        """Rebuild the float32 cos/sin tables on device (after to_empty() or a dtype change)."""
        self.rotaries = nn.ModuleDict({k: v.to(device) for k, v in rotary_for(self.config).items()})

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.embed_group is not None:
            dtype = self.embed_tokens.weight.dtype
            rows = self.embed_group.rows(input_ids.reshape(-1), dtype)
            x = rows.reshape(*input_ids.shape, -1)
        else:
            x = self.embed_tokens(input_ids)
        if self.config.embed_scale is not None:  # Gemma: scaled by a constant in the run dtype
            x = x * torch.tensor(self.config.embed_scale, dtype=x.dtype)
        return x

    def hidden_states(self, input_ids: torch.Tensor, step) -> torch.Tensor:
        """The layers over the embedded tokens (the final norm is in logits_from)."""
        x = self.embed(input_ids)
        for layer in self.layers:
            x = layer.forward(x, step)
        return x

    def logits_from(self, hidden: torch.Tensor, step) -> torch.Tensor:
        """float32 logits for hidden rows (final norm, projection, optional soft-cap)."""
        x = self.norm(hidden)
        logits = step.logits(self, x)
        cap = self.config.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def eager_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits projection of normed rows with this model's weight formats."""
        group = self.embed_group if self.lm_head is None else self.lm_head.group
        if group is not None:
            rows = x.reshape(-1, x.shape[-1])
            if rows.shape[0] <= group_kernels.plan().kernel_rows:
                rows = rows.float()  # the decode kernel returns float32 logits for these
            return group.matmul(rows).float().reshape(*x.shape[:-1], -1)
        if self.logits_int8 is not None and self.logits_int8.applies(x):
            return self.logits_int8.matmul(x, float_out=True)
        if self.logits_packed is not None and x.dim() == 2:
            return packed_linear(x, self.logits_packed, None).float()
        return F.linear(x, self.logits_weight).float()

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_cache: KVCache,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        dtype = self.embed_tokens.weight.dtype
        step = EagerStep(self.rotaries, positions, kv_cache, meta, dtype)
        return self.hidden_states(input_ids, step)

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits [N, vocab] for hidden rows [N, hidden] returned by forward."""
        return self.logits_from(hidden, EagerStep)

    def load_hf_weights(self, tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy weights named as in transformers into this model (KeyError names a misfit)."""
        load_hf_weights(self, tensors)
