"""Random GGUF blocks for the quant tests: valid codes, finite float16 scales."""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

T = GGMLQuantizationType
# byte ranges of each block's float16 fields (random bytes there could be NaN/inf)
HALF_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q8_0: [0],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
}


def random_blocks(qtype: GGMLQuantizationType, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random bytes of a [rows, cols] tensor of qtype, with finite float16 scales."""
    rng = np.random.default_rng(seed)
    block, size = GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    for start in HALF_FIELDS[qtype]:
        halves = rng.uniform(-0.05, 0.05, size=(rows, cols // block)).astype(np.float16)
        data[..., start : start + 2] = halves.view(np.uint8).reshape(rows, cols // block, 2)
    return data.reshape(rows, -1)
