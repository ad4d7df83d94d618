"""Kernel weight formats: groups of 4-bit or 8-bit integers with a float32 scale and offset.

A weight [N, K] in a group format stands for

    w[n, k] = scale[n, k // group] * q[n, k] + offset[n, k // group]

computed in float32 in that order (multiply, then add), which is also how gguf's
dequantizers compute every type mapped here, so `dequantize` reproduces
`gguf.quants.dequantize` bit for bit (tests/worker/test_quant_formats.py).

- bits=4: q in 0..15, group 32, packed two per byte: the 16 bytes of a group hold
  element j in the low nibble and element j + 16 in the high nibble of byte j
  (GGUF Q4_0/Q4_1's own block layout). q is uint8 [N, K / 2].
- bits=8: q int8 [N, K] (unsigned codes such as Q5_1's 0..31 fit too), group 16 or 32.
- offset is None when every offset is zero (symmetric types: Q8_0, Q5_0, Q6_K, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GroupWeight:
    """One weight [rows, cols] in a group format (see the module docstring)."""

    bits: int
    group: int
    q: torch.Tensor
    scale: torch.Tensor  # float32 [rows, cols // group]
    offset: torch.Tensor | None  # float32 [rows, cols // group] or None (all zero)

    def __post_init__(self) -> None:
        rows, groups = self.scale.shape
        if self.bits == 4:
            ok = self.group == 32 and self.q.dtype == torch.uint8
            ok = ok and tuple(self.q.shape) == (rows, groups * 16)
        elif self.bits == 8:
            ok = self.group in (16, 32) and self.q.dtype == torch.int8
            ok = ok and tuple(self.q.shape) == (rows, groups * self.group)
        else:
            ok = False
        ok = ok and self.scale.dtype == torch.float32
        if self.offset is not None:
            ok = ok and self.offset.dtype == torch.float32 and self.offset.shape == self.scale.shape
        if not ok:
            raise ValueError(
                f"inconsistent group weight: bits={self.bits} group={self.group} "
                f"q {self.q.dtype}{tuple(self.q.shape)} scale {self.scale.dtype}{tuple(self.scale.shape)}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        rows, groups = self.scale.shape
        return rows, groups * self.group

    def nbytes(self) -> int:
        """Bytes held (codes, scales and offsets)."""
        extra = 0 if self.offset is None else self.offset.nbytes
        return self.q.nbytes + self.scale.nbytes + extra

    def codes(self) -> torch.Tensor:
        """q as int32 [rows, cols] (4-bit codes unpacked)."""
        if self.bits == 8:
            return self.q.to(torch.int32)
        rows, cols = self.shape
        packed = self.q.reshape(rows, cols // 32, 16).to(torch.int32)
        return torch.cat([packed & 0xF, packed >> 4], dim=2).reshape(rows, cols)

    def dequantize(self, rows: slice | None = None) -> torch.Tensor:
        """The float32 weight (or a slice of its rows): the reference the kernels match."""
        sel = rows if rows is not None else slice(None)
        part = GroupWeight(
            self.bits,
            self.group,
            self.q[sel],
            self.scale[sel],
            None if self.offset is None else self.offset[sel],
        )
        n, k = part.shape
        q = part.codes().float().reshape(n, k // self.group, self.group)
        w = part.scale[..., None] * q
        if part.offset is not None:
            w = w + part.offset[..., None]
        return w.reshape(n, k)

    def select_rows(self, index: torch.Tensor) -> GroupWeight:
        """The weight with its rows reordered (index: int64 [rows])."""
        offset = None if self.offset is None else self.offset[index].contiguous()
        return GroupWeight(
            self.bits,
            self.group,
            self.q[index].contiguous(),
            self.scale[index].contiguous(),
            offset,
        )


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """Codes uint8 [rows, cols] in 0..15 -> the 4-bit layout uint8 [rows, cols / 2]."""
    rows, cols = q.shape
    g = q.reshape(rows, cols // 32, 2, 16)
    return (g[:, :, 0] | (g[:, :, 1] << 4)).reshape(rows, cols // 2)


def quantize_int4(weight: torch.Tensor) -> GroupWeight:
    """Asymmetric 4-bit groups of 32 (Q4_1's grid: q = 0 at the group min, 15 at its max)."""
    rows, cols = weight.shape
    w = weight.detach().float().reshape(rows, cols // 32, 32)
    low, high = w.amin(dim=2), w.amax(dim=2)
    scale = (high - low) / 15
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round((w - low[..., None]) / safe[..., None]).clamp_(0, 15).to(torch.uint8)
    return GroupWeight(4, 32, pack_nibbles(q.reshape(rows, cols)), scale, low)


def quantize_int8(weight: torch.Tensor, group: int = 32) -> GroupWeight:
    """Symmetric 8-bit groups (Q8_0's grid: scale = max|w| / 127)."""
    rows, cols = weight.shape
    w = weight.detach().float().reshape(rows, cols // group, group)
    scale = w.abs().amax(dim=2) / 127
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / safe[..., None]).clamp_(-127, 127).to(torch.int8)
    return GroupWeight(8, group, q.reshape(rows, cols), scale, None)
