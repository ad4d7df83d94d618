"""oneDNN linears over a bounded set of row counts.

oneDNN (through ideep) caches one compiled primitive per GEMM shape, up to
1024 per cache, each holding a few hundred KiB of JIT code and scratchpad
in the malloc heap. A serving engine feeds its linears every row count from
1 to the step's token budget, so those caches grow for minutes, then evict
and rebuild entries for ever, and the heap creeps with the churn. Padding
the rows up to a bucket keeps the shapes few (each cached once, early).

Invariant: `bucket_rows(m) >= m`; rows up to EXACT_ROWS are their own
bucket, larger ones round up to a multiple of ROW_STEP (WIDE_STEP past
WIDE_ROWS); the padded rows are zeros and are cut from the output, so each
real row's result is the GEMM of that row alone.
"""

from __future__ import annotations

import torch

EXACT_ROWS = 16
ROW_STEP = 16
WIDE_ROWS = 512
WIDE_STEP = 64


def bucket_rows(m: int) -> int:
    """The padded row count for an input of m rows."""
    if m <= EXACT_ROWS:
        return m
    step = ROW_STEP if m <= WIDE_ROWS else WIDE_STEP
    return -(-m // step) * step


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [M, K] @ packed weight (+ bias) -> [M, N], run at the bucketed row count."""
    m = x.shape[0]
    rows = bucket_rows(m)
    if rows != m:
        x = torch.cat([x, x.new_zeros(rows - m, x.shape[1])])
    out = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    return out[:m] if rows != m else out
