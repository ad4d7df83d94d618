"""Q4_K and Q6_K encoders in numpy (gguf's Python package only decodes these types).

Used to write K-quant GGUF files of random-weight models for benchmarks. The encoders
take the plain route (per-sub-block min/max, no search over scales as llama.cpp's
quantizer does), so their error is somewhat above llama.cpp's, and each returns the
blocks together with the float32 values they encode, which gguf's dequantizer must give
back exactly (tests/worker/test_quant_kquants.py).

Q4_K: 144-byte blocks of 256: f16 d, f16 dmin, 12 bytes of 6-bit sub-scales and
sub-mins, 128 bytes of nibbles; w = d*sc*q - dmin*m per 32. Q6_K: 210-byte blocks of
256: 128 bytes low nibbles, 64 bytes of 2-bit highs, 16 int8 scales, f16 d;
w = d*sc*(q - 32) per 16.
"""

from __future__ import annotations

import numpy as np


def _half(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16)


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def quantize_q4_k(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [N, K] (K % 256 == 0) -> (uint8 [N, K / 256 * 144], the float32 values encoded)."""
    n, k = rows.shape
    x = rows.astype(np.float32).reshape(-1, 8, 32)
    low = np.minimum(x.min(axis=2), 0)
    high = x.max(axis=2)
    scale, mins = (high - low) / 15, -low
    d = _half(scale.max(axis=1) / 63)
    dmin = _half(mins.max(axis=1) / 63)
    d32, dmin32 = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    sc = np.clip(np.rint(_divide(scale, np.broadcast_to(d32, scale.shape))), 0, 63)
    m = np.clip(np.rint(_divide(mins, np.broadcast_to(dmin32, mins.shape))), 0, 63)
    eff_scale = d32 * sc.astype(np.float32)
    eff_min = dmin32 * m.astype(np.float32)
    q = np.rint(_divide(x + eff_min[..., None], np.broadcast_to(eff_scale[..., None], x.shape)))
    q = np.clip(q, 0, 15).astype(np.uint8)
    values = eff_scale[..., None] * q.astype(np.float32) - eff_min[..., None]
    sc, m = sc.astype(np.uint8), m.astype(np.uint8)
    packed = np.empty((x.shape[0], 12), np.uint8)
    packed[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
    pairs = q.reshape(-1, 4, 2, 32)
    qs = (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(-1, 128)
    blocks = np.concatenate(
        [d.reshape(-1, 1).view(np.uint8), dmin.reshape(-1, 1).view(np.uint8), packed, qs], axis=1
    )
    return blocks.reshape(n, -1), values.reshape(n, k)


def quantize_q6_k(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [N, K] (K % 256 == 0) -> (uint8 [N, K / 256 * 210], the float32 values encoded)."""
    n, k = rows.shape
    x = rows.astype(np.float32).reshape(-1, 16, 16)
    scale = np.abs(x).max(axis=2) / 31
    d = _half(scale.max(axis=1) / 127)
    d32 = d.astype(np.float32)[:, None]
    sc = np.clip(np.rint(_divide(scale, np.broadcast_to(d32, scale.shape))), -128, 127)
    eff = d32 * sc.astype(np.float32)
    q = np.clip(np.rint(_divide(x, np.broadcast_to(eff[..., None], x.shape))), -32, 31)
    values = eff[..., None] * q.astype(np.float32)
    u = (q + 32).astype(np.uint8).reshape(-1, 2, 128)
    ql = (u[:, :, 0:64] & 0xF) | ((u[:, :, 64:128] & 0xF) << 4)
    high = (u >> 4).reshape(-1, 2, 4, 32)
    qh = high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)
    blocks = np.concatenate(
        [
            ql.reshape(-1, 128),
            qh.reshape(-1, 64),
            sc.astype(np.int8).view(np.uint8),
            d.reshape(-1, 1).view(np.uint8),
        ],
        axis=1,
    )
    return blocks.reshape(n, -1), values.reshape(n, k)
