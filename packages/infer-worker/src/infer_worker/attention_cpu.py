"""Paged attention in plain torch (the CPU path; also correct on CUDA).

Decodes (one query token) of all sequences are done together: their pages
are gathered at once, GQA is folded into one batched matmul, and one masked
softmax covers the batch; on the CPU, once the C++ kernel of
cpp_kernels.py is built, decodes read the pages in place instead. Each prefill chunk (several query tokens, maybe
after a cached prefix) runs through scaled_dot_product_attention with an
offset causal mask.

Every path takes the layer's options: `window` (None or > 0: the query at
position p attends to positions > p - window only; earlier pages are not read
by the decode paths) and `softcap` (None or > 0: scores become
tanh(scores / softcap) * softcap before the softmax), and `scales`: None for
pages in the model's dtype, or the (key, value) row scales of int8 pages
(kv_quant.py). Decodes read int8 pages in place (the C++ kernel dequantizes
in registers; the torch reference gathers and dequantizes); a prefill chunk
dequantizes the pages it reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cpp_kernels import decode_int8_kernel, decode_kernel
from .kv_quant import dequantize_rows, write_kv_int8
from .metadata import AttentionMetadata

Scales = tuple[torch.Tensor, torch.Tensor] | None


def write_kv(
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    slot_mapping: torch.Tensor,
    scales: Scales = None,
) -> None:
    """Store key/value [T, KVH, D] of flattened token i into slot slot_mapping[i]."""
    if scales is not None:
        write_kv_int8(key_cache, value_cache, scales, key, value, slot_mapping)
        return
    kvh, dim = key_cache.shape[-2:]
    if key.dtype != key_cache.dtype:
        key, value = key.to(key_cache.dtype), value.to(value_cache.dtype)
    key_cache.view(-1, kvh, dim).index_copy_(0, slot_mapping, key)
    value_cache.view(-1, kvh, dim).index_copy_(0, slot_mapping, value)


def paged_attention_torch(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    window: int | None = None,
    softcap: float | None = None,
    scales: Scales = None,
) -> torch.Tensor:
    """Attention output [T, H, D] for query [T, H, D] over the paged cache (already written)."""
    opts = (scale, window or 0, softcap or 0.0, scales)
    if meta.decode_only:
        return _decode(
            query, key_cache, value_cache, meta.block_tables, meta.seq_lens, meta.max_seq_len, *opts
        )
    out = torch.empty_like(query)
    starts = meta.query_start_loc.tolist()
    lens = meta.seq_lens.tolist()
    q_lens = [starts[s + 1] - starts[s] for s in range(meta.num_seqs)]
    decodes = [s for s in range(meta.num_seqs) if q_lens[s] == 1]
    if decodes:
        seqs = torch.tensor(decodes, device=query.device)
        tokens = torch.tensor([starts[s] for s in decodes], device=query.device)
        out[tokens] = _decode(
            query[tokens],
            key_cache,
            value_cache,
            meta.block_tables[seqs],
            meta.seq_lens[seqs],
            max(lens[s] for s in decodes),
            *opts,
        )
    for s in range(meta.num_seqs):
        if q_lens[s] > 1:
            a, b = starts[s], starts[s + 1]
            out[a:b] = _prefill(
                query[a:b], key_cache, value_cache, meta.block_tables[s], lens[s], *opts
            )
    return out


def _decode(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    max_len: int,
    scale: float,
    window: int,
    softcap: float,
    scales: Scales,
) -> torch.Tensor:
    """One query token per sequence: query [S, H, D] -> [S, H, D]; max_len = max(seq_lens)."""
    on_cpu = query.device.type == "cpu" and query.dtype in (torch.float32, torch.bfloat16)
    if scales is not None:
        kernel = decode_int8_kernel() if on_cpu else None
        if kernel is not None and key_cache.is_contiguous():
            args = (block_tables, seq_lens, scale, window, softcap)
            return kernel(query.contiguous(), key_cache, value_cache, *scales, *args)
        args = (block_tables, seq_lens, max_len, scale, window, softcap, scales)
        return decode_torch(query, key_cache, value_cache, *args)
    kernel = decode_kernel() if query.device.type == "cpu" else None
    if (
        kernel is not None
        and query.dtype in (torch.float32, torch.bfloat16)
        and key_cache.dtype == query.dtype
        and key_cache.is_contiguous()
    ):
        return kernel(
            query.contiguous(),
            key_cache,
            value_cache,
            block_tables,
            seq_lens,
            scale,
            window,
            softcap,
        )
    return decode_torch(
        query, key_cache, value_cache, block_tables, seq_lens, max_len, scale, window, softcap
    )


def decode_torch(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    max_len: int,
    scale: float,
    window: int = 0,
    softcap: float = 0.0,
    scales: Scales = None,
) -> torch.Tensor:
    """_decode in plain torch: pages gathered, GQA folded into one matmul, one masked softmax.

    window > 0 / softcap > 0 / scales as in the module docstring (0: off); int8 pages are
    dequantized to float32 and attended in float32 (the reference of the C++ int8 kernel)."""
    num_seqs, heads, dim = query.shape
    _, block_size, kv_heads, _ = key_cache.shape
    group = heads // kv_heads
    num_blocks = -(-max_len // block_size)
    tables = block_tables[:, :num_blocks].long()
    length = num_blocks * block_size
    keys, values = key_cache[tables], value_cache[tables]
    if scales is not None:
        keys = dequantize_rows(keys, scales[0][tables], torch.float32)
        values = dequantize_rows(values, scales[1][tables], torch.float32)
    keys = keys.view(num_seqs, length, kv_heads, dim).permute(0, 2, 3, 1)
    values = values.view(num_seqs, length, kv_heads, dim).transpose(1, 2)
    q = query.view(num_seqs, kv_heads, group, dim).to(keys.dtype)
    compute = torch.float32 if query.dtype != torch.float32 else query.dtype
    scores = torch.matmul(q, keys).to(compute) * scale  # [S, KVH, G, L]
    if softcap > 0:
        scores = torch.tanh(scores / softcap) * softcap
    token = torch.arange(length, device=query.device)[None, :]
    pad = token >= seq_lens[:, None]
    if window > 0:
        pad |= token < seq_lens[:, None] - window
    scores.masked_fill_(pad[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(values.dtype)
    return torch.matmul(probs, values).reshape(num_seqs, heads, dim).to(query.dtype)


def _prefill(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    table: torch.Tensor,
    seq_len: int,
    scale: float,
    window: int = 0,
    softcap: float = 0.0,
    scales: Scales = None,
) -> torch.Tensor:
    """Query tokens that are the last q_len of seq_len context tokens: [Q, H, D] -> [Q, H, D].

    With a window only the pages that hold positions >= seq_len - q_len - window + 1 are read;
    int8 pages (scales given) are dequantized to the query's dtype as they are gathered.
    """
    q_len, heads, dim = query.shape
    _, block_size, kv_heads, _ = key_cache.shape
    offset = seq_len - q_len
    first = max(0, offset - window + 1) if window > 0 else 0
    first_block = first // block_size
    start = first_block * block_size  # position of the first key read
    num_blocks = -(-seq_len // block_size)
    blocks = table[first_block:num_blocks].long()
    keys, values = key_cache[blocks], value_cache[blocks]
    if scales is not None:
        keys = dequantize_rows(keys, scales[0][blocks], query.dtype)
        values = dequantize_rows(values, scales[1][blocks], query.dtype)
    keys = keys.view(-1, kv_heads, dim)[: seq_len - start].transpose(0, 1)
    values = values.view(-1, kv_heads, dim)[: seq_len - start].transpose(0, 1)
    q = query.transpose(0, 1)
    q_pos = torch.arange(q_len, device=query.device)[:, None] + offset
    k_pos = torch.arange(start, seq_len, device=query.device)[None, :]
    mask = k_pos <= q_pos
    if window > 0:
        mask &= k_pos > q_pos - window
    if softcap > 0:
        return _capped(q, keys, values, mask, scale, softcap).transpose(0, 1)
    out = F.scaled_dot_product_attention(
        q.unsqueeze(0),
        keys.unsqueeze(0),
        values.unsqueeze(0),
        attn_mask=mask,
        scale=scale,
        enable_gqa=kv_heads != heads,
    )
    return out[0].transpose(0, 1)


def _capped(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    scale: float,
    softcap: float,
) -> torch.Tensor:
    """Soft-capped attention of q [H, Q, D] over keys/values [KVH, L, D] -> [H, Q, D]."""
    group = q.shape[0] // keys.shape[0]
    keys = keys.repeat_interleave(group, dim=0)
    values = values.repeat_interleave(group, dim=0)
    scores = torch.matmul(q.float(), keys.float().transpose(1, 2)) * scale
    scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, values.float()).to(q.dtype)
