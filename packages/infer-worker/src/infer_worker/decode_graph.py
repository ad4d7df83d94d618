"""The decode step as one traceable function, with paged attention as a torch.library op.

`decode_logits` runs a whole decode step (one new token per sequence) from
token ids to float32 logits using only tensors, so torch.compile can turn it
into one graph per batch size: the host ints of AttentionMetadata (which
would specialise the graph on every context length) are not used. The
attention of each layer is the custom op `infer::paged_decode`, which writes
the new keys/values into the layer's cache pages and attends over them in
place (the C++ kernel when built, else the torch path); the compiled graph
calls it as an opaque kernel and mutates the caches in place (over int8 pages,
`infer::paged_decode_int8` also takes and writes the row scales). When the C++
library is built the graph calls its dispatcher ops `infer_cpu::paged_decode`,
`infer_cpu::paged_decode_int8` and `infer_cpu::int8_linear` (csrc/ops.cpp)
instead: same arguments, same results, without the Python custom op's
per-call cost (~60 us, x30 a step).

Linears use the int8 copy when the batch is small enough (as Linear.forward;
the W8A8 kernel through the op `infer::int8_linear`), else plain F.linear, so
that inductor's freezing can fold and prepack the weight itself.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from .attention_cpu import decode_torch, write_kv
from .cpp_kernels import decode_int8_kernel, decode_kernel, int8_kernel
from .int8 import WEIGHT_ONLY_ROWS, Int8Weight, w8a8_linear
from .models.decoder import CausalLM
from .models.layers import Linear


@torch.library.custom_op("infer::paged_decode", mutates_args=("key_cache", "value_cache"))
def paged_decode(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    layer: int,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    slot_mapping: torch.Tensor,
    scale: float,
    window: int,
    softcap: float,
) -> torch.Tensor:
    """Write key/value [S, KVH, D] of layer `layer` into slot_mapping, then attend: -> [S, H, D].

    key_cache/value_cache are the whole caches [layers, blocks, block, KVH, D]; window > 0
    limits each query to the last `window` positions, softcap > 0 caps the logits.
    """
    kc, vc = key_cache[layer], value_cache[layer]
    write_kv(kc, vc, key, value, slot_mapping)
    kernel = decode_kernel()
    if kernel is not None and query.dtype in (torch.float32, torch.bfloat16):
        return kernel(query.contiguous(), kc, vc, block_tables, seq_lens, scale, window, softcap)
    max_len = int(seq_lens.max())
    return decode_torch(query, kc, vc, block_tables, seq_lens, max_len, scale, window, softcap)


@paged_decode.register_fake
def _paged_decode_fake(
    query, key, value, key_cache, value_cache, layer, tables, lens, slots, scale, window, softcap
):
    return torch.empty_like(query)


@torch.library.custom_op(
    "infer::paged_decode_int8",
    mutates_args=("key_cache", "value_cache", "key_scale", "value_scale"),
)
def paged_decode_int8(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    key_scale: torch.Tensor,
    value_scale: torch.Tensor,
    layer: int,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    slot_mapping: torch.Tensor,
    scale: float,
    window: int,
    softcap: float,
) -> torch.Tensor:
    """paged_decode over int8 pages with their row scales (whole [layers, ...] tensors)."""
    kc, vc = key_cache[layer], value_cache[layer]
    scales = (key_scale[layer], value_scale[layer])
    write_kv(kc, vc, key, value, slot_mapping, scales)
    kernel = decode_int8_kernel()
    if kernel is not None and query.dtype in (torch.float32, torch.bfloat16):
        args = (block_tables, seq_lens, scale, window, softcap)
        return kernel(query.contiguous(), kc, vc, *scales, *args)
    max_len = int(seq_lens.max())
    args = (block_tables, seq_lens, max_len, scale, window, softcap, scales)
    return decode_torch(query, kc, vc, *args)


@paged_decode_int8.register_fake
def _paged_decode_int8_fake(query, key, value, kc, vc, ks, vs, layer, *rest):
    return torch.empty_like(query)


@torch.library.custom_op("infer::int8_linear", mutates_args=())
def int8_linear(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    float_out: bool,
) -> torch.Tensor:
    """The W8A8 linear of int8.py as an op the compiled graph calls opaquely."""
    return w8a8_linear(x, qweight, scale, bias, float_out)


@int8_linear.register_fake
def _int8_linear_fake(x, qweight, scale, bias, float_out):
    dtype = torch.float32 if float_out else x.dtype
    return x.new_empty((x.shape[0], qweight.shape[0]), dtype=dtype)


@functools.cache
def _register_cpp_fakes() -> None:
    torch.library.register_fake("infer_cpu::paged_decode")(_paged_decode_fake)
    torch.library.register_fake("infer_cpu::paged_decode_int8")(_paged_decode_int8_fake)
    torch.library.register_fake("infer_cpu::int8_linear")(_int8_linear_fake)


def decode_ops() -> Any:
    """The op namespace for decode_logits: the C++-registered ops `infer_cpu::*` (a few us
    a call) when the library is loaded, else the Python custom ops above (tens of us).
    Call it outside tracing, after cpp_kernels.start_build."""
    if int8_kernel() is None:
        return torch.ops.infer
    _register_cpp_fakes()
    return torch.ops.infer_cpu


def _int8_matmul(
    ops: Any,
    int8: Int8Weight,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    float_out: bool = False,
) -> torch.Tensor:
    """Int8Weight.matmul with the W8A8 kernel behind a torch.library op (traceable)."""
    if x.shape[0] > WEIGHT_ONLY_ROWS:
        return ops.int8_linear(x, int8.qweight, int8.scale32, bias, float_out)
    return int8.weight_only(x, bias, float_out)


class GraphStep:
    """The step (models/step.py) of a compiled decode: one token per sequence, tensors only.

    Linears use the int8 copy when the batch is small enough (through ops.int8_linear),
    else plain F.linear; attention is ops.paged_decode (ops.paged_decode_int8 when `caches`
    holds int8 pages and their scales); rotary rows come from the tables.
    """

    def __init__(self, model, ops, positions, dtype, caches, tables, lens, slots):
        self.model = model
        self.ops = ops
        self.positions = positions
        self.dtype = dtype
        self.caches = caches
        self.tables, self.lens, self.slots = tables, lens, slots
        self._rope: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def linear(self, module: Linear, x: torch.Tensor) -> torch.Tensor:
        int8 = module.int8
        if int8 is not None and int8.applies(x):
            return _int8_matmul(self.ops, int8, x, module.bias)
        return F.linear(x, module.weight, module.bias)

    def logits(self, model: CausalLM, h: torch.Tensor) -> torch.Tensor:
        if model.logits_int8 is not None and model.logits_int8.applies(h):
            return _int8_matmul(self.ops, model.logits_int8, h, None, float_out=True)
        return F.linear(h, model.logits_weight).float()

    def rope(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in self._rope:
            self._rope[name] = self.model.rotaries[name].decode(self.positions, self.dtype)
        return self._rope[name]

    def attend(self, layer: int, options, q, k, v) -> torch.Tensor:
        op = self.ops.paged_decode_int8 if len(self.caches) == 4 else self.ops.paged_decode
        return op(
            q,
            k,
            v,
            *self.caches,
            layer,
            self.tables,
            self.lens,
            self.slots,
            options.scale,
            options.window or 0,
            options.softcap or 0.0,
        )


def decode_logits(
    model: CausalLM,
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    slot_mapping: torch.Tensor,
    ops: Any = torch.ops.infer,
    key_scale: torch.Tensor | None = None,
    value_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """float32 logits [S, vocab] of one decode step of S sequences (ops: see decode_ops).

    input_ids, positions, slot_mapping: [S]; block_tables int32 [S, W]; seq_lens int32 [S]
    (including the new token); positions must be below model.rotary.max_positions.
    key_scale/value_scale: the row scales of int8 caches (KVCache.key_scale), else None.
    The layers are the model's own (CausalLM.hidden_states / logits_from) over GraphStep.
    """
    dtype = model.embed_tokens.weight.dtype
    caches = (key_cache, value_cache)
    if key_scale is not None and value_scale is not None:
        caches = (key_cache, value_cache, key_scale, value_scale)
    step = GraphStep(model, ops, positions, dtype, caches, block_tables, seq_lens, slot_mapping)
    return model.logits_from(model.hidden_states(input_ids, step), step)
