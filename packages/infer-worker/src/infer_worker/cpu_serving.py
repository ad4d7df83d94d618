"""CPU serving defaults: the dtype `auto` means, and the fast paths turned on for serving.

Measured on the 2-core AVX-512-bf16 CI machine class (docs/benchmarks.md,
"CPU engine speed (issue 8)"): bf16 halves the weight bytes a decode step
streams; int8 weight-only linears are faster up to batch ~8 and no faster at
32; oneDNN-prepacked weights beat plain F.linear for larger batches. float32
stays available (and token-exact with transformers) with `--dtype float32`,
which leaves the model untouched.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from .attention_cpp import start_build
from .model import LlamaModel

log = logging.getLogger("infer_worker")

DEFAULT_INT8_ROWS = 8


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 dot products (avx512_bf16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def serving_dtype(dtype: str, device: torch.device) -> str:
    """The dtype name to load with: `auto` on a bf16-capable CPU is bfloat16."""
    if dtype == "auto" and device.type == "cpu" and cpu_has_bf16():
        return "bfloat16"
    return dtype


def prepare_cpu_serving(model: LlamaModel, dtype: torch.dtype, int8_rows: int) -> list[str]:
    """Turn on the CPU fast paths for a bf16 model; returns the names of those turned on.

    float32 and non-CPU models are left as they are (exactness first). int8_rows = 0
    keeps the bf16 weights for every batch size.
    """
    enabled: list[str] = []
    device = model.embed_tokens.weight.device
    if device.type != "cpu":
        return enabled
    start_build()
    enabled.append("cpp-decode-attention")
    if dtype != torch.bfloat16:
        return enabled
    try:
        model.use_packed()
        enabled.append("onednn-packed-linears")
    except RuntimeError as exc:  # a torch build without mkldnn
        log.warning("prepacked weights unavailable: %s", exc)
    if int8_rows > 0:
        model.use_int8(int8_rows)
        enabled.append(f"int8-weights(batch<={int8_rows})")
    return enabled
