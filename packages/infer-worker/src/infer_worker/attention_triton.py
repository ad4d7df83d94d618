"""Paged attention as one Triton kernel (the CUDA path).

One program handles one sequence, one tile of BLOCK_M query tokens and one
KV head; the GROUP query heads that share that KV head are folded into the
rows of the tile (rows = BLOCK_M * GROUP_PAD), so each key/value tile is
loaded once per group. Keys are walked in tiles of BLOCK_N positions; each
position's slot comes from the block table (any page size works) and an
online softmax in float32 accumulates the output. Causality: query m of a
sequence sits at position seq_len - q_len + m and sees keys 0 .. that
position; padded rows and head slots are masked and never stored. With a
sliding window (window > 0) it sees only positions > its position - window,
and the key walk starts at the first tile holding such a position (earlier
pages are never read). With softcap > 0 scores become tanh(s / cap) * cap
before the softmax.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .metadata import AttentionMetadata


@triton.jit
def _paged_attention_kernel(
    Q,
    K,
    V,
    Out,
    block_tables,
    seq_lens,
    query_start_loc,
    scale,
    window,
    softcap,
    stride_qt,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_ot,
    stride_oh,
    stride_bt,
    PAGE: tl.constexpr,
    GROUP: tl.constexpr,
    GROUP_PAD: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    D_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
    USE_WINDOW: tl.constexpr,
    USE_SOFTCAP: tl.constexpr,
):
    seq = tl.program_id(0)
    tile = tl.program_id(1)
    kv_head = tl.program_id(2)
    q_start = tl.load(query_start_loc + seq)
    q_len = tl.load(query_start_loc + seq + 1) - q_start
    if tile * BLOCK_M < q_len:
        seq_len = tl.load(seq_lens + seq)
        context = seq_len - q_len
        rows = tl.arange(0, BLOCK_M * GROUP_PAD)
        m = tile * BLOCK_M + rows // GROUP_PAD
        g = rows % GROUP_PAD
        row_ok = (m < q_len) & (g < GROUP)
        head = kv_head * GROUP + g
        d = tl.arange(0, D_PAD)
        d_ok = d < HEAD_DIM
        token = (q_start + m).to(tl.int64)
        q = tl.load(
            Q + token[:, None] * stride_qt + head[:, None] * stride_qh + d[None, :],
            mask=row_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        q_pos = context + m
        m_i = tl.full([BLOCK_M * GROUP_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M * GROUP_PAD], tl.float32)
        acc = tl.zeros([BLOCK_M * GROUP_PAD, D_PAD], tl.float32)
        end = tl.minimum(context + (tile + 1) * BLOCK_M, seq_len)
        table = block_tables + seq.to(tl.int64) * stride_bt
        lo = 0
        if USE_WINDOW:  # the tile's first query sees positions > its position - window
            lo = tl.maximum(context + tile * BLOCK_M - window + 1, 0)
            lo = (lo // BLOCK_N) * BLOCK_N
        for start in range(lo, end, BLOCK_N):
            n = start + tl.arange(0, BLOCK_N)
            n_ok = n < end
            block = tl.load(table + n // PAGE, mask=n_ok, other=0).to(tl.int64)
            offset = n % PAGE
            k = tl.load(
                K
                + block[None, :] * stride_kb
                + offset[None, :] * stride_ks
                + kv_head * stride_kh
                + d[:, None],
                mask=n_ok[None, :] & d_ok[:, None],
                other=0.0,
            )
            scores = tl.dot(q, k, input_precision=PRECISION) * scale
            if USE_SOFTCAP:  # tanh(x) = 1 - 2 / (exp(2x) + 1), exact at both saturations
                scores = (1.0 - 2.0 / (tl.exp(2.0 * scores / softcap) + 1.0)) * softcap
            visible = (n[None, :] <= q_pos[:, None]) & n_ok[None, :]
            if USE_WINDOW:
                visible = visible & (n[None, :] > q_pos[:, None] - window)
            scores = tl.where(visible, scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp(scores - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(
                V
                + block[:, None] * stride_vb
                + offset[:, None] * stride_vs
                + kv_head * stride_vh
                + d[None, :],
                mask=n_ok[:, None] & d_ok[None, :],
                other=0.0,
            )
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        acc = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
        tl.store(
            Out + token[:, None] * stride_ot + head[:, None] * stride_oh + d[None, :],
            acc.to(Out.dtype.element_ty),
            mask=row_ok[:, None] & d_ok[None, :],
        )


def paged_attention_triton(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    window: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Attention output [T, H, D] for query [T, H, D] over the paged cache (already written)."""
    tokens, heads, dim = query.shape
    _, page, kv_heads, _ = key_cache.shape
    group = heads // kv_heads
    group_pad = triton.next_power_of_2(group)
    d_pad = max(16, triton.next_power_of_2(dim))
    rows = 16 if meta.decode_only else 64
    block_m = max(1, rows // group_pad)
    block_n = 64  # a key tile (d_pad x block_n) stays within 16 KiB: fits shared memory
    while block_n > 16 and d_pad * block_n * query.element_size() > 16384:
        block_n //= 2
    out = torch.empty_like(query)
    if tokens == 0:
        return out
    query = query.contiguous()
    grid = (meta.num_seqs, triton.cdiv(meta.max_query_len, block_m), kv_heads)
    _paged_attention_kernel[grid](
        query,
        key_cache,
        value_cache,
        out,
        meta.block_tables,
        meta.seq_lens,
        meta.query_start_loc,
        scale,
        window or 0,
        float(softcap or 0.0),
        query.stride(0),
        query.stride(1),
        key_cache.stride(0),
        key_cache.stride(1),
        key_cache.stride(2),
        value_cache.stride(0),
        value_cache.stride(1),
        value_cache.stride(2),
        out.stride(0),
        out.stride(1),
        meta.block_tables.stride(0),
        PAGE=page,
        GROUP=group,
        GROUP_PAD=group_pad,
        HEAD_DIM=dim,
        D_PAD=d_pad,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        PRECISION="ieee" if query.dtype == torch.float32 else "tf32",
        USE_WINDOW=bool(window),
        USE_SOFTCAP=bool(softcap),
    )
    return out
