"""int8 KV pages: symmetric absmax quantization with one scale per (token, kv head).

A key or value row x [head_dim] is stored as q = round(x / s) in [-127, 127]
with s = max|x| / 127 held in SCALE_DTYPE (q is computed against the stored
s, so the row reads back as q * s with |x - q * s| <= s / 2). A row of zeros
stores s = 0. The scales of a layer are [num_blocks, block_size, kv_heads],
beside pages of [num_blocks, block_size, kv_heads, head_dim], so slot s of
either is at the same flat index.
"""

from __future__ import annotations

import torch

from .cpp_kernels import kv_write_int8_kernel

SCALE_DTYPE = torch.bfloat16
QMAX = 127.0


def quantize_rows(
    x: torch.Tensor, scale_dtype: torch.dtype = SCALE_DTYPE
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., D] -> (int8 [..., D], scale [...]) with x ~= q * scale[..., None]."""
    xf = x.float()
    scale = (xf.abs().amax(dim=-1) / QMAX).to(scale_dtype)
    inv = 1.0 / scale.float().clamp_min(torch.finfo(torch.float32).tiny)
    q = torch.round(xf * inv.unsqueeze(-1)).clamp_(-QMAX, QMAX).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """int8 [..., D] and scale [...] -> q * scale in dtype (computed in float32)."""
    return (q.float() * scale.float().unsqueeze(-1)).to(dtype)


def write_kv_int8(
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    scales: tuple[torch.Tensor, torch.Tensor],
    key: torch.Tensor,
    value: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Quantize key/value [T, KVH, D] and store token i (rows and scales) in slot_mapping[i].

    On the CPU, once the C++ kernels are built, one pass of csrc/kv_write.cpp does it (the
    same rule; ~60 us less per layer and step than the torch ops below)."""
    kernel = kv_write_int8_kernel() if key.device.type == "cpu" else None
    if kernel is not None and key.dtype in (torch.float32, torch.bfloat16):
        kernel(key, value.to(key.dtype), key_cache, value_cache, *scales, slot_mapping.long())
        return
    write_kv_int8_torch(key_cache, value_cache, scales, key, value, slot_mapping)


def write_kv_int8_torch(
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    scales: tuple[torch.Tensor, torch.Tensor],
    key: torch.Tensor,
    value: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """write_kv_int8 in torch ops (any device; the reference of csrc/kv_write.cpp)."""
    kvh, dim = key_cache.shape[-2:]
    for cache, scale, rows in ((key_cache, scales[0], key), (value_cache, scales[1], value)):
        q, s = quantize_rows(rows, scale.dtype)
        cache.view(-1, kvh, dim).index_copy_(0, slot_mapping, q)
        scale.view(-1, kvh).index_copy_(0, slot_mapping, s)
