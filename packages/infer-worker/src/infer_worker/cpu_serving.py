"""CPU serving defaults: the dtype `auto` means, and the fast paths turned on for serving.

Measured on the 2-core AVX-512-bf16 CI machine class (docs/benchmarks.md,
"CPU engine speed (issue 8)"): bf16 halves the weight bytes a decode step
streams; int8 weight-only linears are faster up to batch ~8 and no faster at
32; oneDNN-prepacked weights beat plain F.linear for larger batches; steps of
prefill size (>= 64 tokens) run their linears as float32 GEMMs, which oneDNN
runs 1.5-2x faster than bf16 ones on that machine (wide_gemm.py). float32
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
from .wide_gemm import DEFAULT_MIN_ROWS, cpu_has_amx

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


def prepare_cpu_serving(
    model: LlamaModel, dtype: torch.dtype, int8_rows: int, wide_rows: int = DEFAULT_MIN_ROWS
) -> list[str]:
    """Turn on the CPU fast paths for a bf16 model; returns the names of those turned on.

    float32 and non-CPU models are left as they are (exactness first). int8_rows = 0
    keeps the bf16 weights for every batch size; wide_rows = 0 (or a CPU with AMX, whose
    bf16 GEMMs are the fast ones) keeps bf16 GEMMs for prefill-sized steps too (else
    steps of >= wide_rows tokens use float32 GEMMs).
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
        if wide_rows > 0 and not cpu_has_amx():
            model.use_wide(wide_rows)
            enabled.append(f"float32-gemm(batch>={wide_rows})")
    except RuntimeError as exc:  # a torch build without mkldnn
        log.warning("prepacked weights unavailable: %s", exc)
    if int8_rows > 0:
        model.use_int8(int8_rows)
        enabled.append(f"int8-weights(batch<={int8_rows})")
    return enabled
