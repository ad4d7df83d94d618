"""The numpy Q4_K/Q6_K encoders write blocks gguf's dequantizer reads back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from infer_worker.quant.kquants import quantize_q4_k, quantize_q6_k

T = GGMLQuantizationType


@pytest.mark.parametrize(
    ("encode", "qtype", "rel_err"),
    [(quantize_q4_k, T.Q4_K, 0.13), (quantize_q6_k, T.Q6_K, 0.03)],
    ids=["Q4_K", "Q6_K"],
)
def test_encoder_roundtrip(encode, qtype, rel_err):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 512)).astype(np.float32) * 0.02
    w[3] = 0.0  # an all-zero row: zero scales must not give NaN
    w[5, :256] += 0.5  # an all-positive super-block (Q4_K's min clamps to 0)
    blocks, values = encode(w)
    back = dequantize(blocks, qtype).reshape(w.shape)
    assert np.array_equal(back, values)
    assert np.isfinite(back).all() and not back[3].any()
    # the error of a plain min/max grid: under a fraction of each 32-block's range
    err = np.abs(back - w).reshape(-1, 32).max(axis=1)
    span = np.ptp(w.reshape(-1, 32), axis=1) + np.abs(w.reshape(-1, 32)).max(axis=1)
    assert (err <= rel_err * span + 1e-7).all()
