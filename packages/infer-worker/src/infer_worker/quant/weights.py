"""Quantized weights as a model holds them: row-stacks of group weights, and GGUF loading.

A fused projection (qkv = [q; k; v] rows, gate_up = [gate; up]) may join parts of
different GGUF types (Q4_K_M stores some attn_v as Q6_K beside Q4_K q and k), so
`StackedWeight` keeps one GroupWeight or bf16 tensor per run of rows and concatenates
their outputs; parts of one format are merged into one (one kernel call).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from gguf import GGMLQuantizationType

from .formats import GroupWeight
from .gguf_repack import MAPPING, repack
from .kernels import group_matmul

log = logging.getLogger("infer_worker")

Part = GroupWeight | torch.Tensor  # a bf16 tensor for the float types


def _same_format(a: Part, b: Part) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    return (a.bits, a.group, a.offset is None) == (b.bits, b.group, b.offset is None)


def _merge(a: Part, b: Part) -> Part:
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    offset = None if a.offset is None else torch.cat([a.offset, b.offset])
    return GroupWeight(
        a.bits, a.group, torch.cat([a.q, b.q]), torch.cat([a.scale, b.scale]), offset
    )


def _rows(part: Part) -> int:
    return part.shape[0]


class StackedWeight:
    """Weight [N, K] = rows of its parts in order; one copy, in each part's own format."""

    def __init__(self, parts: Sequence[Part]) -> None:
        cols = {p.shape[1] for p in parts}
        if len(cols) != 1:
            raise ValueError(f"stacked parts disagree on columns: {sorted(cols)}")
        merged: list[Part] = []
        for part in parts:
            if merged and _same_format(merged[-1], part):
                merged[-1] = _merge(merged[-1], part)
            else:
                merged.append(part)
        self.parts = merged
        self.shape = (sum(_rows(p) for p in merged), cols.pop())

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] @ W^T -> [M, N] in x's dtype."""
        outs = [
            torch.nn.functional.linear(x, p.to(x.dtype))
            if isinstance(p, torch.Tensor)
            else group_matmul(x, p)
            for p in self.parts
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)

    def rows(self, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Rows `index` (int64 [T]) of the float weight, in dtype (an embedding lookup)."""
        out = torch.empty(index.numel(), self.shape[1], dtype=dtype)
        start = 0
        for p in self.parts:
            end = start + _rows(p)
            hit = ((index >= start) & (index < end)).nonzero().flatten()
            if hit.numel():
                local = index[hit] - start
                if isinstance(p, torch.Tensor):
                    out[hit] = p[local].to(dtype)
                else:
                    out[hit] = p.select_rows(local).dequantize().to(dtype)
            start = end
        return out

    def nbytes(self) -> int:
        return sum(p.nbytes if isinstance(p, torch.Tensor) else p.nbytes() for p in self.parts)


def unpermute_index(rows: int, heads: int) -> torch.Tensor:
    """Row order undoing llama.cpp's Q/K permutation (gguf_loader._unpermute) as an index."""
    order = np.arange(rows).reshape(heads, rows // heads // 2, 2).swapaxes(1, 2).reshape(rows)
    return torch.from_numpy(np.ascontiguousarray(order))


def gguf_weights(gguf, num_heads: int, num_kv_heads: int) -> Iterator[tuple[str, Part]]:
    """(GGUF tensor name, weight in its kernel format) for every 2-D tensor of a GGUFFile,
    Q/K rows un-permuted for the llama architecture; logs what each type became.

    Raises KeyError naming a tensor whose type has no mapping.
    """
    kinds: Counter[str] = Counter()
    for tensor in gguf.tensors:
        if len(tensor.shape) != 2:
            continue
        if tensor.qtype not in MAPPING:
            raise KeyError(f"tensor {tensor.name!r} has unsupported type {tensor.qtype.name}")
        weight = repack(tensor.data, tensor.qtype)
        if gguf.arch == "llama" and tensor.name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = num_heads if "attn_q" in tensor.name else num_kv_heads
            index = unpermute_index(tensor.shape[0], heads)
            weight = (
                weight[index] if isinstance(weight, torch.Tensor) else weight.select_rows(index)
            )
        kinds[tensor.qtype.name] += 1
        yield tensor.name, weight
    for name, count in sorted(kinds.items()):
        log.info("GGUF %s: %d tensors held as %s", name, count, MAPPING[GGMLQuantizationType[name]])
