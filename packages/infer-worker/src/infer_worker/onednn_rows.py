"""oneDNN linears over a bounded set of row counts.

oneDNN (through ideep) caches one compiled primitive per GEMM shape, up to
1024 per cache, each holding a few hundred KiB of JIT code and scratchpad
in the malloc heap. A serving engine feeds its linears every row count from
1 to the step's token budget, so those caches grow for minutes, then evict
and rebuild entries for ever, and the heap creeps with the churn. Padding
the rows up to a bucket keeps the shapes few (each cached once, early).

Invariant: `bucket_rows(m) >= m`; rows up to EXACT_ROWS are their own
bucket, larger ones round up to one of STEPS_PER_DOUBLING evenly spaced
sizes per power of two (so less than 1/8 extra rows, and 56 buckets for
1..512 rows); the padded rows are zeros and are cut from the output, so
each real row's result is the GEMM of that row alone.
"""

from __future__ import annotations

import torch

EXACT_ROWS = 16
STEPS_PER_DOUBLING = 8


def bucket_rows(m: int) -> int:
    """The padded row count for an input of m rows."""
    if m <= EXACT_ROWS:
        return m
    # m in (2**k, 2**(k+1)]: a step of 2**k / STEPS_PER_DOUBLING
    step = (1 << ((m - 1).bit_length() - 1)) // STEPS_PER_DOUBLING
    return -(-m // step) * step


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [M, K] @ packed weight (+ bias) -> [M, N], run at the bucketed row count."""
    m = x.shape[0]
    rows = bucket_rows(m)
    if rows != m:
        x = torch.cat([x, x.new_zeros(rows - m, x.shape[1])])
    out = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    return out[:m] if rows != m else out
