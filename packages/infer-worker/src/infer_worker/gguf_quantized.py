"""GGUF tensors in their kernel formats (quant/): what a CPU bf16 model holds, one copy.

Every 2-D tensor of a type quant.gguf_repack maps is repacked from its raw blocks
(GroupWeight, or bf16 for the float types); Q/K rows of the llama architecture are
un-permuted by row index, which the formats allow exactly. Tensors of other types,
and 1-D tensors (norms, biases), are dequantized to the run dtype as before. The
load log says, per GGUF type, what its tensors became.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import numpy as np
import torch
from gguf import GGMLQuantizationType

from .gguf_tensors import PlanEntry, dequantize_entry
from .quant.formats import GroupWeight
from .quant.gguf_repack import MAPPING, repack
from .quant.weights import unpermute_index

log = logging.getLogger("infer_worker")

Value = GroupWeight | torch.Tensor


def _repacked(entry: PlanEntry) -> Value:
    weight = repack(entry.tensor.data, entry.tensor.qtype)
    if entry.fixup and entry.fixup.startswith("unpermute:"):
        index = unpermute_index(entry.tensor.shape[0], int(entry.fixup.split(":")[1]))
        weight = weight[index] if isinstance(weight, torch.Tensor) else weight.select_rows(index)
    return weight


def quantized_weights(plan: list[PlanEntry], dtype: torch.dtype) -> Iterator[tuple[str, Value]]:
    """(HF name, value): kernel formats for mapped 2-D tensors, dtype tensors otherwise."""
    held: Counter[str] = Counter()
    dequantized: Counter[str] = Counter()
    for entry in plan:
        tensor = entry.tensor
        if len(tensor.shape) == 2 and tensor.qtype in MAPPING and entry.fixup != "minus_one":
            held[tensor.qtype.name] += 1
            value = _repacked(entry)
            yield entry.hf_name, value.to(dtype) if isinstance(value, torch.Tensor) else value
            continue
        if len(tensor.shape) == 2:
            dequantized[tensor.qtype.name] += 1
        array = dequantize_entry(entry)
        yield entry.hf_name, torch.from_numpy(np.array(array, copy=True)).to(dtype)
    for name, count in sorted(held.items()):
        log.info("GGUF %s: %d matrices held as %s", name, count, MAPPING[tensor_type(name)])
    for name, count in sorted(dequantized.items()):
        log.info(
            "GGUF %s: %d matrices dequantized to %s (no kernel format for this type)",
            name,
            count,
            str(dtype).removeprefix("torch."),
        )


def tensor_type(name: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[name]


DENSE_SHARE = 0.25  # auto: dense weights while their bf16 bytes stay under this share of RAM


def wants_kernel_formats(
    device: torch.device, dtype: torch.dtype, mode: str, dense_bytes: int, available: int
) -> bool:
    """Kernel formats serve CPU bf16 models only; float32 stays the exact (dequantized)
    mode. "kernel" always, "dequantize" never; "auto" when the dense bf16 weights would
    take DENSE_SHARE or more of the available RAM: below that the dense path (int8 linears,
    1.45x the kernel formats' 32-stream throughput on the default model) is used."""
    if device.type != "cpu" or dtype != torch.bfloat16 or mode == "dequantize":
        return False
    return mode == "kernel" or dense_bytes >= DENSE_SHARE * available


def dense_bytes(tensors) -> int:
    """bf16 bytes of every tensor of a GGUF file, dequantized."""
    return sum(2 * int(np.prod(t.shape)) for t in tensors)
