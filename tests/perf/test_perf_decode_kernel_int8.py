"""int8 KV pages: the C++ paged decode kernel (int8 rows dequantized in registers) gives what
the torch reference gives on the same pages, and both stay close to attention over the
unquantized pages (GQA, several lengths, a window, a soft cap, the portable loop)."""

from __future__ import annotations

import pytest
import torch

from infer_worker.attention_cpu import decode_torch
from infer_worker.cpp_kernels import decode_int8_kernel
from infer_worker.kv_quant import dequantize_rows, quantize_rows

CASES = [
    ([1], 9, 3, 64),
    ([5, 17, 33, 200], 9, 3, 64),
    ([16, 1, 48], 4, 4, 32),
    ([70, 190], 32, 8, 64),
    ([70], 8, 1, 128),
    ([3, 40], 4, 2, 8),  # the portable loop: head_dim not a multiple of 16
    ([21], 16, 1, 64),  # the portable loop: more than 8 query heads per kv head
]
IDS = ["one-token", "gqa-3", "mha", "gqa-4-llama-1b", "gqa-8-d128", "scalar-d8", "scalar-gqa-16"]


def int8_case(lens, heads, kv_heads, dim, scale_dtype=torch.bfloat16, q_dtype=torch.bfloat16):
    """Query, float pages, their int8 rows and scales, scattered block tables (block 0 unused)."""
    gen = torch.Generator().manual_seed(sum(lens) + heads + dim)
    block = 16
    width = max(-(-n // block) for n in lens) + 1  # one padded (never read) column
    blocks = len(lens) * width + 1
    keys = torch.randn(blocks, block, kv_heads, dim, generator=gen) * 2.0
    values = torch.randn(blocks, block, kv_heads, dim, generator=gen)
    kq, ks = quantize_rows(keys, scale_dtype)
    vq, vs = quantize_rows(values, scale_dtype)
    perm = torch.randperm(blocks - 1, generator=gen) + 1
    tables = perm[: len(lens) * width].view(len(lens), width).to(torch.int32)
    query = torch.randn(len(lens), heads, dim, generator=gen).to(q_dtype)
    return query, (keys, values), (kq, vq, ks, vs), tables, torch.tensor(lens, dtype=torch.int32)


def test_quantized_rows_read_back_within_half_a_step() -> None:
    x = torch.randn(50, 3, 64) * torch.logspace(-3, 3, 50)[:, None, None]
    x[7, 1] = 0.0  # a row of zeros stores scale 0 and reads back as zeros
    for scale_dtype in (torch.float32, torch.bfloat16):
        q, s = quantize_rows(x, scale_dtype)
        assert q.dtype == torch.int8 and s.dtype == scale_dtype and s.shape == (50, 3)
        assert q.abs().max() <= 127 and s[7, 1] == 0
        back = dequantize_rows(q, s, torch.float32)
        step = s.float().unsqueeze(-1)
        assert ((back - x).abs() <= step * 0.5 + 1e-6 * x.abs()).all()
        assert torch.equal(back[7, 1], torch.zeros(64))


@pytest.mark.parametrize("q_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("lens", "heads", "kv_heads", "dim"), CASES, ids=IDS)
def test_int8_kernel_matches_torch_reference(
    cpp_kernel, q_dtype, scale_dtype, lens, heads, kv_heads, dim
) -> None:
    kernel = decode_int8_kernel()
    assert kernel is not None, "gcc is installed here: the kernel must build"
    q, (keys, values), (kq, vq, ks, vs), tables, seq_lens = int8_case(
        lens, heads, kv_heads, dim, scale_dtype, q_dtype
    )
    scale = dim**-0.5
    got = kernel(q, kq, vq, ks, vs, tables, seq_lens, scale, 0, 0.0)
    want = decode_torch(q, kq, vq, tables, seq_lens, max(lens), scale, scales=(ks, vs))
    assert got.dtype == q_dtype and got.shape == q.shape
    tol = 1e-5 if q_dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)
    # and int8 pages stay near the unquantized ones (~1% of the output's size)
    exact = decode_torch(q.float(), keys, values, tables, seq_lens, max(lens), scale)
    assert (got.float() - exact).norm() / exact.norm() < 0.03


@pytest.mark.parametrize(("window", "softcap"), [(7, 0.0), (0, 2.5), (20, 1.0), (1, 0.0)])
@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(9, 3, 64), (4, 2, 8)])
def test_int8_window_and_softcap_match_torch_reference(
    cpp_kernel, window, softcap, heads, kv_heads, dim
) -> None:
    kernel = decode_int8_kernel()
    lens = [5, 17, 33, 70]
    q, _, (kq, vq, ks, vs), tables, seq_lens = int8_case(lens, heads, kv_heads, dim)
    scale = dim**-0.5
    got = kernel(q, kq, vq, ks, vs, tables, seq_lens, scale, window, softcap)
    want = decode_torch(
        q, kq, vq, tables, seq_lens, max(lens), scale, window, softcap, scales=(ks, vs)
    )
    torch.testing.assert_close(got.float(), want.float(), atol=1e-2, rtol=1e-2)


def test_int8_pages_before_the_window_are_never_read(cpp_kernel) -> None:
    kernel = decode_int8_kernel()
    q, _, (kq, vq, ks, vs), tables, seq_lens = int8_case([70], 4, 2, 64)
    clean = kernel(q, kq, vq, ks, vs, tables, seq_lens, 0.125, 20, 0.0)
    for block in tables[0, : (70 - 20) // 16].tolist():  # pages wholly before the window
        ks[block] = float("nan")
        vs[block] = float("nan")
        kq[block] = 127
    assert torch.equal(kernel(q, kq, vq, ks, vs, tables, seq_lens, 0.125, 20, 0.0), clean)
    vs[tables[0, 69 // 16]] = float("nan")  # the page of the newest token is read
    assert kernel(q, kq, vq, ks, vs, tables, seq_lens, 0.125, 20, 0.0).isnan().any()


def test_int8_kernel_rejects_bad_input(cpp_kernel) -> None:
    kernel = decode_int8_kernel()
    q, (keys, values), (kq, vq, ks, vs), tables, seq_lens = int8_case([8], 9, 3, 64)
    with pytest.raises(RuntimeError, match="int8 caches"):
        kernel(q, keys, values, ks, vs, tables, seq_lens, 0.125, 0, 0.0)
    with pytest.raises(RuntimeError, match="scales"):
        kernel(q, kq, vq, ks[:, :8].contiguous(), vs, tables, seq_lens, 0.125, 0, 0.0)
    with pytest.raises(RuntimeError, match="float32 or bfloat16 scales"):
        kernel(q, kq, vq, ks.half(), vs.half(), tables, seq_lens, 0.125, 0, 0.0)
    with pytest.raises(RuntimeError, match="outside the block table"):
        kernel(q, kq, vq, ks, vs, tables, seq_lens * 1000, 0.125, 0, 0.0)


@pytest.mark.parametrize("row_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale_dtype", [torch.float32, torch.bfloat16])
def test_cpp_write_stores_what_the_torch_write_stores(cpp_kernel, row_dtype, scale_dtype) -> None:
    from infer_worker.cpp_kernels import kv_write_int8_kernel
    from infer_worker.kv_quant import write_kv_int8_torch

    kernel = kv_write_int8_kernel()
    gen = torch.Generator().manual_seed(11)
    shape = (6, 16, 3, 64)
    key = torch.randn(20, 3, 64, generator=gen) * torch.logspace(-4, 2, 20)[:, None, None]
    value = torch.randn(20, 3, 64, generator=gen)
    key[4, 1] = 0.0  # a row of zeros
    key, value = key.to(row_dtype), value.to(row_dtype)
    slots = torch.randperm(96, generator=gen)[:20]
    pages = [torch.zeros(shape, dtype=torch.int8) for _ in range(4)]
    scales = [torch.full(shape[:-1], 7.0, dtype=scale_dtype) for _ in range(4)]
    kernel(key, value, pages[0], pages[1], scales[0], scales[1], slots)
    write_kv_int8_torch(pages[2], pages[3], (scales[2], scales[3]), key, value, slots)
    assert torch.equal(scales[0], scales[2]) and torch.equal(scales[1], scales[3])
    assert torch.equal(pages[0], pages[2]) and torch.equal(pages[1], pages[3])
    assert (scales[0] == 7.0).sum() == scales[0].numel() - 60  # other slots untouched
    with pytest.raises(RuntimeError, match="slot out of range"):
        kernel(key, value, pages[0], pages[1], scales[0], scales[1], slots + 96)
