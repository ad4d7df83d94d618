"""The engine's oneDNN linears see a bounded set of shapes (onednn_rows.py).

oneDNN caches one compiled primitive (a few hundred KiB of malloc heap) per
GEMM shape. Fed every row count from 1 to 512 unpadded, those caches grew
the engine's heap by hundreds of MiB over minutes and then churned (the soak's
creep). Padded to buckets, a full sweep of row counts adds a few dozen shapes
once, and a second sweep adds nothing.
"""

from __future__ import annotations

import pytest
import torch

from infer_worker.heap import malloc_stats
from infer_worker.models.layers import Linear
from infer_worker.onednn_rows import bucket_rows, packed_linear


def _malloc_in_use_mib() -> float:
    stats = malloc_stats()
    return stats["arena_used"] + stats["mmapped"]


def test_buckets_cover_and_stay_few() -> None:
    buckets = {bucket_rows(m) for m in range(1, 2049)}
    assert all(bucket_rows(m) >= m for m in range(1, 2049))
    assert all(bucket_rows(m) == m for m in range(1, 17))
    assert [bucket_rows(m) for m in (17, 32, 33, 65, 500, 513)] == [18, 32, 36, 72, 512, 576]
    assert all(bucket_rows(m) - m < m / 8 for m in range(1, 2049))
    assert len({bucket_rows(m) for m in range(1, 513)}) == 56
    assert len(buckets) == 72


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_padded_rows_give_the_unpadded_result(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    weight = (torch.randn(96, 64) * 0.1).to(dtype)
    bias = torch.randn(96).to(dtype)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, 32)
    for m in (1, 5, 17, 40, 65, 130):
        x = torch.randn(m, 64).to(dtype)
        out = packed_linear(x, packed, bias)
        assert out.shape == (m, 96) and out.dtype == dtype
        ref = (x.float() @ weight.float().T + bias.float()).to(dtype)
        torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)


def test_a_sweep_of_row_counts_does_not_grow_the_heap_again() -> None:
    """Every row count 1..512 through a packed bf16 linear: the second sweep allocates nothing."""
    torch.manual_seed(0)
    linear = Linear(256, 384, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(384, 256) * 0.05)
    linear = linear.to(torch.bfloat16)
    linear.use_packed(32)
    inputs = [torch.randn(m, 256).to(torch.bfloat16) for m in range(1, 513)]

    def sweep() -> None:
        with torch.inference_mode():
            for x in inputs:
                linear(x)

    before = _malloc_in_use_mib()
    sweep()
    first = _malloc_in_use_mib() - before
    sweep()
    second = _malloc_in_use_mib() - before - first
    # unpadded, the 512 shapes kept ~320 MiB here (~0.6 MiB each); the 56 buckets ~35 MiB
    assert first < 80, f"the first sweep kept {first:.1f} MiB"
    assert abs(second) < 2, f"the second sweep grew the heap by {second:.1f} MiB"
