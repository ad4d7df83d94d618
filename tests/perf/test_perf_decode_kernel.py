"""The C++ paged decode kernel gives what the plain torch decode gives, reading pages in place
(through its AVX-512 path where the CPU has one, and its portable loop)."""

from __future__ import annotations

import pytest
import torch

from infer_worker.attention_cpu import decode_torch
from infer_worker.cpp_kernels import decode_kernel


def random_case(dtype: torch.dtype, lens: list[int], heads: int, kv_heads: int, dim: int):
    gen = torch.Generator().manual_seed(sum(lens) + heads)
    block = 16
    width = max(-(-n // block) for n in lens) + 1  # one padded (never read) column
    blocks = len(lens) * width + 1
    shape = (blocks, block, kv_heads, dim)
    keys = torch.randn(shape, generator=gen).to(dtype)
    values = torch.randn(shape, generator=gen).to(dtype)
    perm = torch.randperm(blocks - 1, generator=gen) + 1  # scattered, never block 0
    tables = perm[: len(lens) * width].view(len(lens), width).to(torch.int32)
    query = torch.randn(len(lens), heads, dim, generator=gen).to(dtype)
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    return query, keys, values, tables, seq_lens


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("lens", "heads", "kv_heads", "dim"),
    [
        ([1], 9, 3, 64),
        ([5, 17, 33, 200], 9, 3, 64),
        ([16, 1, 48], 4, 4, 32),
        ([70], 8, 1, 128),
        # the portable loop: head_dim not a multiple of 16, more than 8 query heads per kv head
        ([3, 40], 4, 2, 8),
        ([21], 16, 1, 64),
    ],
    ids=["one-token", "gqa-3", "mha", "gqa-8-d128", "scalar-d8", "scalar-gqa-16"],
)
def test_kernel_matches_torch_decode(cpp_kernel, dtype, lens, heads, kv_heads, dim) -> None:
    kernel = decode_kernel()
    assert kernel is not None, "gcc is installed here: the kernel must build"
    q, k, v, tables, seq_lens = random_case(dtype, lens, heads, kv_heads, dim)
    scale = dim**-0.5
    got = kernel(q, k, v, tables, seq_lens, scale, 0, 0.0)
    want = decode_torch(q, k, v, tables, seq_lens, max(lens), scale)
    assert got.dtype == dtype and got.shape == q.shape
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)


def test_kernel_ignores_other_sequences_pages(cpp_kernel) -> None:
    """Changing a page no table of sequence 0 points to leaves sequence 0's output alone."""
    kernel = decode_kernel()
    q, k, v, tables, seq_lens = random_case(torch.float32, [20, 40], 9, 3, 64)
    before = kernel(q, k, v, tables, seq_lens, 0.125, 0, 0.0)
    other = tables[1, :3].long()
    k[other] += 5.0
    v[other] -= 5.0
    after = kernel(q, k, v, tables, seq_lens, 0.125, 0, 0.0)
    assert torch.equal(before[0], after[0])
    assert not torch.equal(before[1], after[1])


def test_kernel_rejects_bad_input(cpp_kernel) -> None:
    kernel = decode_kernel()
    q, k, v, tables, seq_lens = random_case(torch.float32, [8], 9, 3, 64)
    with pytest.raises(RuntimeError, match="int32"):
        kernel(q, k, v, tables.long(), seq_lens, 0.125, 0, 0.0)
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        kernel(q.half(), k.half(), v.half(), tables, seq_lens, 0.125, 0, 0.0)


def test_kernel_refuses_out_of_range_reads(cpp_kernel) -> None:
    kernel = decode_kernel()
    q, k, v, tables, seq_lens = random_case(torch.float32, [8], 9, 3, 64)
    with pytest.raises(RuntimeError, match="outside the block table"):
        kernel(q, k, v, tables, torch.tensor([10_000], dtype=torch.int32), 0.125, 0, 0.0)
    bad = tables.clone()
    bad[0, 0] = k.shape[0]
    with pytest.raises(RuntimeError, match="bad block id"):
        kernel(q, k, v, bad, seq_lens, 0.125, 0, 0.0)


def test_stale_build_directories_are_removed(tmp_path) -> None:
    """A build killed midway leaves a tmp* directory; the next build removes old ones only."""
    import os
    import time

    from infer_worker.cpp_kernels import _remove_stale_builds

    old, new = tmp_path / "tmpold", tmp_path / "tmpnew"
    old.mkdir()
    new.mkdir()
    (tmp_path / "kernel.so").write_text("built")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    _remove_stale_builds(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel.so", "tmpnew"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("window", "softcap"), [(7, 0.0), (0, 2.5), (20, 1.0), (1, 0.0)])
@pytest.mark.parametrize(("heads", "dim"), [(9, 64), (4, 8)], ids=["avx512", "scalar"])
def test_window_and_softcap_match_torch_decode(cpp_kernel, dtype, window, softcap, heads, dim):
    kernel = decode_kernel()
    lens = [5, 17, 33, 70]
    q, k, v, tables, seq_lens = random_case(
        dtype, lens, heads, heads // (3 if heads == 9 else 2), dim
    )
    scale = dim**-0.5
    got = kernel(q, k, v, tables, seq_lens, scale, window, softcap)
    want = decode_torch(q, k, v, tables, seq_lens, max(lens), scale, window, softcap)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)


def test_pages_before_the_window_are_never_read(cpp_kernel) -> None:
    kernel = decode_kernel()
    q, k, v, tables, seq_lens = random_case(torch.float32, [70], 4, 2, 64)
    clean = kernel(q, k, v, tables, seq_lens, 0.125, 20, 0.0)
    for block in tables[0, : (70 - 20) // 16].tolist():  # pages wholly before the window
        k[block] = float("nan")
        v[block] = float("nan")
    poisoned = kernel(q, k, v, tables, seq_lens, 0.125, 20, 0.0)
    assert torch.equal(poisoned, clean)
