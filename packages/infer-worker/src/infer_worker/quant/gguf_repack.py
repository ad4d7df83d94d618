"""GGUF tensor bytes -> kernel formats (formats.py), straight from the raw blocks.

No float copy of a weight is made: codes are unpacked as uint8/int8 and only the
per-group scales and offsets are computed in float32, in the order gguf's
dequantizers use, so GroupWeight.dequantize equals gguf.quants.dequantize bit for
bit. `MAPPING` says what each supported type becomes; the float types become bf16
(F32 and F16 weights are rounded to bf16, the model's compute dtype).
"""

from __future__ import annotations

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import IQ4_NL, Q4_K

from .formats import GroupWeight, pack_nibbles

T = GGMLQuantizationType

MAPPING: dict[GGMLQuantizationType, str] = {
    T.F32: "bf16 (rounded from float32)",
    T.F16: "bf16 (rounded from float16)",
    T.BF16: "bf16",
    T.Q4_0: "4-bit groups of 32, exact",
    T.Q4_1: "4-bit groups of 32, exact",
    T.Q4_K: "4-bit groups of 32, exact",
    T.Q8_0: "8-bit groups of 32, exact",
    T.Q5_0: "8-bit groups of 32, exact (5-bit codes held in 8 bits)",
    T.Q5_1: "8-bit groups of 32, exact (5-bit codes held in 8 bits)",
    T.Q5_K: "8-bit groups of 32, exact (5-bit codes held in 8 bits)",
    T.Q6_K: "8-bit groups of 16, exact (6-bit codes held in 8 bits)",
    T.Q2_K: "8-bit groups of 16, exact (2-bit codes held in 8 bits)",
    T.Q3_K: "8-bit groups of 16, exact (3-bit codes held in 8 bits)",
    T.IQ4_NL: "8-bit groups of 32, exact (non-uniform 4-bit levels held in 8 bits)",
    T.IQ4_XS: "8-bit groups of 32, exact (non-uniform 4-bit levels held in 8 bits)",
}
FLOAT_TYPES = (T.F32, T.F16, T.BF16)
_ROWS_PER_CHUNK = 2048  # bounds the uint8 temporaries of one tensor


def _f16(raw: np.ndarray) -> np.ndarray:
    """[..., 2] uint8 -> float32 [...] (a float16 field of each block)."""
    return np.ascontiguousarray(raw).view(np.float16)[..., 0].astype(np.float32)


def _nibbles(raw: np.ndarray, width: int) -> np.ndarray:
    """[..., c, width] bytes -> [..., c, 2, width]: low nibbles, then high nibbles."""
    return np.stack([raw & 0x0F, raw >> 4], axis=-2)


def _q4_0(b: np.ndarray):
    d = _f16(b[..., 0:2])
    q = _nibbles(b[..., 2:18], 16).reshape(*b.shape[:-1], 32)
    return 4, 32, q, d, -8 * d  # d*q - 8d == d*(q-8) exactly (both sides exact)


def _q4_1(b: np.ndarray):
    q = _nibbles(b[..., 4:20], 16).reshape(*b.shape[:-1], 32)
    return 4, 32, q, _f16(b[..., 0:2]), _f16(b[..., 2:4])


def _q8_0(b: np.ndarray):
    return 8, 32, b[..., 2:34].view(np.int8), _f16(b[..., 0:2]), None


def _q5_codes(qh: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Q5_0/Q5_1: 4-byte high bits + 16 bytes of nibbles -> codes uint8 [..., 32] in 0..31."""
    bits = np.unpackbits(qh, axis=-1, bitorder="little")  # [..., 32]: bit j is element j
    low = _nibbles(qs, 16).reshape(*qs.shape[:-1], 32)
    return low | (bits << 4)


def _q5_0(b: np.ndarray):
    q = (_q5_codes(b[..., 2:6], b[..., 6:22]).astype(np.int8) - np.int8(16)).astype(np.int8)
    return 8, 32, q, _f16(b[..., 0:2]), None


def _q5_1(b: np.ndarray):
    q = _q5_codes(b[..., 4:8], b[..., 8:24]).view(np.int8)
    return 8, 32, q, _f16(b[..., 0:2]), _f16(b[..., 2:4])


def _k_scales(b: np.ndarray):
    """Q4_K/Q5_K super-block header -> (scale, offset) float32 [..., 8] per 32 weights."""
    lead = b.shape[:-1]
    d, dmin = _f16(b[..., 0:2]), _f16(b[..., 2:4])
    sc, m = Q4_K.get_scale_min(np.ascontiguousarray(b[..., 4:16]).reshape(-1, 12))
    sc = sc.reshape(*lead, 8).astype(np.float32)
    m = m.reshape(*lead, 8).astype(np.float32)
    return d[..., None] * sc, -(dmin[..., None] * m)  # a + (-b) == a - b exactly


def _q4_k(b: np.ndarray):
    scale, offset = _k_scales(b)
    # qs: 4 chunks of 32 bytes; a chunk's low nibbles are one group, its high nibbles the next
    q = _nibbles(b[..., 16:144].reshape(*b.shape[:-1], 4, 32), 32)
    return 4, 32, q.reshape(*b.shape[:-1], 256), scale, offset


def _q5_k(b: np.ndarray):
    scale, offset = _k_scales(b)
    lead = b.shape[:-1]
    low = _nibbles(b[..., 48:176].reshape(*lead, 4, 32), 32).reshape(*lead, 8, 32)
    qh = b[..., 16:48].reshape(*lead, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(8, 1)
    q = low | ((qh & 1) << 4)
    return 8, 32, q.reshape(*lead, 256).view(np.int8), scale, offset


def _q6_k(b: np.ndarray):
    lead = b.shape[:-1]
    low = _nibbles(b[..., 0:128].reshape(*lead, 2, 64), 64).reshape(*lead, 8, 32)
    qh = b[..., 128:192].reshape(*lead, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    q = ((low | ((qh.reshape(*lead, 8, 32) & 3) << 4)).astype(np.int8) - np.int8(32)).astype(
        np.int8
    )
    sc = np.ascontiguousarray(b[..., 192:208]).view(np.int8).astype(np.float32)
    d = _f16(b[..., 208:210])
    return 8, 16, q.reshape(*lead, 256), d[..., None] * sc, None


def _q2_k(b: np.ndarray):
    lead = b.shape[:-1]
    sc = b[..., 0:16]
    d, dmin = _f16(b[..., 80:82]), _f16(b[..., 82:84])
    scale = d[..., None] * (sc & 0xF).astype(np.float32)
    offset = -(dmin[..., None] * (sc >> 4).astype(np.float32))
    q = b[..., 16:80].reshape(*lead, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    return 8, 16, (q & 3).reshape(*lead, 256).view(np.int8), scale, offset


def _q3_k(b: np.ndarray):
    lead = b.shape[:-1]
    hmask, qs, raw, d = b[..., 0:32], b[..., 32:96], b[..., 96:108], _f16(b[..., 108:110])
    low = (raw[..., 0:8].reshape(*lead, 1, 8) >> np.array([0, 4], np.uint8).reshape(2, 1)) & 0xF
    high = (
        raw[..., 8:12].reshape(*lead, 1, 4) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    ) & 3
    sc = low.reshape(*lead, 16) | (high.reshape(*lead, 16) << 4)
    scale = d[..., None] * (sc.astype(np.int8) - np.int8(32)).astype(np.float32)
    ql = qs.reshape(*lead, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    qh = hmask.reshape(*lead, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(8, 1)
    q = (ql.reshape(*lead, 8, 32) & 3).astype(np.int8) - (((qh & 1) ^ 1) << 2).astype(np.int8)
    return 8, 16, q.astype(np.int8).reshape(*lead, 256), scale, None


_IQ4 = np.array(IQ4_NL.kvalues, dtype=np.int8)


def _iq4_nl(b: np.ndarray):
    q = _IQ4[_nibbles(b[..., 2:18], 16).reshape(*b.shape[:-1], 32)]
    return 8, 32, q, _f16(b[..., 0:2]), None


def _iq4_xs(b: np.ndarray):
    lead = b.shape[:-1]
    d = _f16(b[..., 0:2])
    high = np.ascontiguousarray(b[..., 2:4]).view(np.uint16)
    high = (high >> np.arange(0, 16, 2, dtype=np.uint16)) & 3  # [..., 8]
    low = _nibbles(b[..., 4:8], 4).swapaxes(-1, -2).reshape(*lead, 8)
    ls = (low | (high.astype(np.uint8) << 4)).astype(np.int8) - np.int8(32)
    q = _IQ4[_nibbles(b[..., 8:136].reshape(*lead, 8, 16), 16).reshape(*lead, 256)]
    return 8, 32, q, d[..., None] * ls.astype(np.float32), None


_DECODERS = {
    T.Q4_0: _q4_0,
    T.Q4_1: _q4_1,
    T.Q8_0: _q8_0,
    T.Q5_0: _q5_0,
    T.Q5_1: _q5_1,
    T.Q4_K: _q4_k,
    T.Q5_K: _q5_k,
    T.Q6_K: _q6_k,
    T.Q2_K: _q2_k,
    T.Q3_K: _q3_k,
    T.IQ4_NL: _iq4_nl,
    T.IQ4_XS: _iq4_xs,
}


def _repack_rows(data: np.ndarray, qtype: GGMLQuantizationType) -> GroupWeight:
    rows = data.shape[0]
    block, size = GGML_QUANT_SIZES[qtype]
    blocks = data.reshape(rows, -1, size)
    bits, group, q, scale, offset = _DECODERS[qtype](blocks)
    q = np.ascontiguousarray(q).reshape(rows, -1)
    codes = torch.from_numpy(q)
    packed = pack_nibbles(codes) if bits == 4 else codes.view(torch.int8)
    scale_t = torch.from_numpy(np.ascontiguousarray(scale, dtype=np.float32).reshape(rows, -1))
    offset_t = None
    if offset is not None:
        offset_t = torch.from_numpy(
            np.ascontiguousarray(offset, dtype=np.float32).reshape(rows, -1)
        )
    return GroupWeight(bits, group, packed, scale_t, offset_t)


def repack(data: np.ndarray, qtype: GGMLQuantizationType) -> GroupWeight | torch.Tensor:
    """A 2-D GGUF tensor's bytes (uint8 [rows, row_bytes]) -> GroupWeight, or bf16 for float types.

    Raises KeyError for a type with no mapping (callers name the tensor and type).
    """
    if qtype in FLOAT_TYPES:
        return _float_tensor(data, qtype)
    if qtype not in _DECODERS:
        raise KeyError(qtype.name)
    parts = [
        _repack_rows(data[start : start + _ROWS_PER_CHUNK], qtype)
        for start in range(0, data.shape[0], _ROWS_PER_CHUNK)
    ]
    if len(parts) == 1:
        return parts[0]
    offsets = None if parts[0].offset is None else torch.cat([p.offset for p in parts])
    return GroupWeight(
        parts[0].bits,
        parts[0].group,
        torch.cat([p.q for p in parts]),
        torch.cat([p.scale for p in parts]),
        offsets,
    )


def _float_tensor(data: np.ndarray, qtype: GGMLQuantizationType) -> torch.Tensor:
    rows = data.shape[0]
    raw = np.ascontiguousarray(data)
    if qtype == T.BF16:
        return torch.from_numpy(raw.view(np.int16).reshape(rows, -1).copy()).view(torch.bfloat16)
    kind = np.float16 if qtype == T.F16 else np.float32
    return torch.from_numpy(raw.view(kind).reshape(rows, -1)).to(torch.bfloat16)
