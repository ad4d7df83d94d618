"""LEGACY: the pre-registry Llama decoder, kept as the `infer_worker.LlamaModel` import
and for tests/perf; every family, Gemma and Phi-3 included, is served by models/ (the
compiled decode graph runs models/ code only).

Weights use fused projections: qkv_proj = [q; k; v] rows and gate_up_proj =
[gate; up] rows. `load_hf_weights` maps transformers' parameter names onto
them, so every loader feeds the model in HF naming.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import fused_cpu
from .attention import paged_attention
from .config import ModelConfig
from .int4 import Int4Weight
from .int4 import supported as int4_supported
from .int8 import Int8Weight, pack_weight
from .kv_cache import KVCache
from .metadata import AttentionMetadata
from .onednn_rows import packed_linear
from .rope import RotaryEmbedding, apply_rotary, inv_frequencies
from .wide_gemm import Float32Weight


class Linear(nn.Linear):
    """nn.Linear without the random init (every weight is overwritten by a loader).

    After `use_int8(max_rows)`, inputs of at most max_rows rows go through an
    int8 copy of the weight (see int8.py); after `use_wide(min_rows)`, inputs of
    at least min_rows rows go through a float32 copy (see wide_gemm.py); after
    `use_packed()`, other inputs use a oneDNN-prepacked copy (same values,
    faster GEMM); otherwise the weight.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.int8: Int8Weight | None = None
        self.packed: torch.Tensor | None = None
        self.wide: Float32Weight | None = None

    def reset_parameters(self) -> None:
        pass

    def use_int8(self, max_rows: int) -> None:
        self.int8 = Int8Weight(self.weight, max_rows)

    def use_int4(self) -> None:
        """After use_int8: 1-2 row inputs use an int4 copy of the weight (int4.py)."""
        if self.int8 is None:
            raise RuntimeError("use_int4 needs use_int8 first")
        self.int8.int4 = Int4Weight(self.weight)

    def use_packed(self, batch_hint: int) -> None:
        self.packed = pack_weight(self.weight, batch_hint)

    def use_wide(self, min_rows: int) -> None:
        self.wide = Float32Weight(self.weight, min_rows, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        int8 = self.int8
        if int8 is not None and int8.applies(x):
            return int8.matmul(x, self.bias)
        wide = self.wide
        if wide is not None and wide.applies(x):
            return wide.matmul(x)
        if self.packed is not None and x.dim() == 2:
            return packed_linear(x, self.packed, self.bias)
        return F.linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, normalised in float32 like transformers."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = fused_cpu.rms_norm(x, self.weight, self.eps)
        if fused is not None:
            return fused
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.q_size = config.num_heads * config.head_dim
        self.kv_size = config.num_kv_heads * config.head_dim
        self.scale = config.head_dim**-0.5
        self.qkv_proj = Linear(
            config.hidden_size, self.q_size + 2 * self.kv_size, bias=config.attention_bias
        )
        self.o_proj = Linear(self.q_size, config.hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        kv_cache: KVCache,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        tokens = x.shape[0]
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(tokens, self.num_heads, self.head_dim)
        k = k.view(tokens, self.num_kv_heads, self.head_dim)
        v = v.view(tokens, self.num_kv_heads, self.head_dim)
        q, k = fused_cpu.rotary(q, k, *rope) or apply_rotary(q, k, *rope)
        key_cache, value_cache = kv_cache.layer(self.layer_index)
        out = paged_attention(q, k, v, key_cache, value_cache, meta, self.scale)
        return self.o_proj(out.reshape(tokens, self.q_size))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gate_up_proj = Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = self.gate_up_proj(x)
        hidden = fused_cpu.silu_mul(gate_up)
        if hidden is None:
            gate, up = gate_up.split(self.intermediate_size, dim=-1)
            hidden = F.silu(gate) * up
        return self.down_proj(hidden)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, rope, kv_cache, meta) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, kv_cache, meta)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """forward(input_ids, positions, kv_cache, meta) -> hidden [T, hidden] (before the final norm);
    compute_logits(hidden rows) -> float32 logits. Both run under inference_mode."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # an explicit weight skips the random init (slow, and the loader overwrites it)
        self.embed_tokens = nn.Embedding(
            config.vocab_size,
            config.hidden_size,
            _weight=torch.empty(config.vocab_size, config.hidden_size),
        )
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.rotary = self._make_rotary()
        self.logits_int8: Int8Weight | None = None
        self.logits_packed: torch.Tensor | None = None

    @property
    def logits_weight(self) -> torch.Tensor:
        """The logits projection's weight: lm_head's, or the tied embedding's."""
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def use_int8(self, max_rows: int) -> None:
        """Give every linear (and the logits projection) an int8 copy used for <= max_rows rows."""
        for module in self.modules():
            if isinstance(module, Linear) and module is not self.lm_head:
                module.use_int8(max_rows)
        self.logits_int8 = Int8Weight(self.logits_weight, max_rows)

    def use_int4(self) -> bool:
        """Give every layer linear (not the logits) an int4 copy for 1-2 row inputs, after
        use_int8; False (nothing changed) when a weight cannot be packed (int4.supported)."""
        linears = [m for m in self.modules() if isinstance(m, Linear) and m is not self.lm_head]
        if not all(int4_supported(m.weight) for m in linears):
            return False
        for module in linears:
            module.use_int4()
        return True

    def use_wide(self, min_rows: int) -> None:
        """Give every layer linear a float32 copy used for inputs of >= min_rows rows (prefill)."""
        for module in self.modules():
            if isinstance(module, Linear) and module is not self.lm_head:
                module.use_wide(min_rows)

    def use_packed(self, batch_hint: int = 32) -> None:
        """Give every layer linear, and the logits projection, a oneDNN-prepacked weight
        (CPU bf16/fp32 only)."""
        for module in self.modules():
            if isinstance(module, Linear) and module is not self.lm_head:
                module.use_packed(batch_hint)
        self.logits_packed = pack_weight(self.logits_weight, batch_hint)

    def _make_rotary(self) -> RotaryEmbedding:
        config = self.config
        inv_freq = inv_frequencies(config.head_dim, config.rope_theta, config.rope_scaling)
        return RotaryEmbedding(inv_freq, config.context_length)

    def reset_rotary(self, device: torch.device | str) -> None:
        """Rebuild the float32 cos/sin tables on device (after to_empty() or a dtype change)."""
        self.rotary = self._make_rotary().to(device)

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_cache: KVCache,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        rope = self.rotary.lookup(positions, meta.max_seq_len, x.dtype)
        for layer in self.layers:
            x = layer(x, rope, kv_cache, meta)
        return x

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits [N, vocab] for hidden rows [N, hidden] returned by forward."""
        x = self.norm(hidden)
        if self.logits_int8 is not None and self.logits_int8.applies(x):
            return self.logits_int8.matmul(x, float_out=True)
        if self.logits_packed is not None and x.dim() == 2:
            return packed_linear(x, self.logits_packed, None).float()
        return F.linear(x, self.logits_weight).float()

    def load_hf_weights(self, tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy weights named as in transformers' LlamaForCausalLM into this model.

        Raises KeyError naming a weight that is unknown or missing.
        """
        own = dict(self.named_parameters())
        pending: dict[str, dict[str, torch.Tensor]] = {}
        filled: set[str] = set()
        for name, tensor in tensors:
            target, part = _fused_name(name)
            if target is None or (target == "lm_head.weight" and self.lm_head is None):
                continue
            if target not in own:
                raise KeyError(f"unexpected weight {name!r}")
            if part is None:
                _copy(own[target], tensor, name)
                filled.add(target)
                continue
            parts = pending.setdefault(target, {})
            parts[part] = tensor
            order = _FUSED_ORDER[target.rsplit(".", 2)[-2]]
            if all(p in parts for p in order):
                _copy(own[target], torch.cat([parts[p] for p in order], dim=0), target)
                filled.add(target)
                del pending[target]
        missing = sorted(set(own) - filled)
        if missing:
            raise KeyError(f"missing weights: {', '.join(missing[:5])}")


_FUSED_ORDER = {"qkv_proj": ("q", "k", "v"), "gate_up_proj": ("gate", "up")}
_FUSED_PARTS = {
    "q_proj": ("qkv_proj", "q"),
    "k_proj": ("qkv_proj", "k"),
    "v_proj": ("qkv_proj", "v"),
    "gate_proj": ("gate_up_proj", "gate"),
    "up_proj": ("gate_up_proj", "up"),
}


def _fused_name(name: str) -> tuple[str | None, str | None]:
    """Map an HF weight name to (our parameter name, part of a fused weight or None)."""
    if name.endswith("rotary_emb.inv_freq"):
        return None, None
    if name.startswith("model."):
        name = name[len("model.") :]
    pieces = name.split(".")
    if len(pieces) >= 2 and pieces[-2] in _FUSED_PARTS:
        fused, part = _FUSED_PARTS[pieces[-2]]
        return ".".join([*pieces[:-2], fused, pieces[-1]]), part
    return name, None


def _copy(param: nn.Parameter, tensor: torch.Tensor, name: str) -> None:
    if tuple(param.shape) != tuple(tensor.shape):
        raise KeyError(
            f"weight {name!r} has shape {tuple(tensor.shape)}, expected {tuple(param.shape)}"
        )
    with torch.no_grad():
        param.copy_(tensor)
