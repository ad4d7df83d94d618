"""CPU serving defaults: the dtype `auto` means, and the fast paths turned on for serving.

Measured on the 2-core AVX-512-bf16 development machine (docs/benchmarks.md,
"Inside the CPU engine"): bf16 halves the weight bytes a decode step
streams; by default every linear is int8 (int8.py: weight-only at 1-2 rows,
W8A8 with two-pass activations above, 1.7x faster than bf16 at 32 rows and as
close to float32's greedy tokens as bf16 itself). With `--int8-max-batch N`
larger steps use oneDNN-prepacked bf16 weights, and steps of prefill size
(>= 64 tokens) float32 GEMMs, which oneDNN runs 1.5-2x faster than bf16 ones
on that machine (wide_gemm.py). float32 stays available (and token-exact
with transformers) with `--dtype float32`, which leaves the model untouched.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import torch

from .cpp_kernels import start_build
from .models import CausalLM
from .wide_gemm import DEFAULT_MIN_ROWS, cpu_has_amx

log = logging.getLogger("infer_worker")

ALL_ROWS = sys.maxsize  # int8 for every step (`--int8-max-batch all`, the default)
DEFAULT_INT8_ROWS = ALL_ROWS


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


def int4_wanted(int4: str, linear_qtype: str | None) -> bool:
    """`--int4-decode`: on, off, or auto = on for linears stored as Q4_1 (int4.py recovers
    their values; for other sources int4 would be a new, lossy quantization)."""
    return int4 == "on" or (int4 == "auto" and linear_qtype == "Q4_1")


def prepare_cpu_serving(
    model: CausalLM,
    dtype: torch.dtype,
    int8_rows: int,
    wide_rows: int = DEFAULT_MIN_ROWS,
    int4: bool = False,
) -> list[str]:
    """Turn on the CPU fast paths for a bf16 model; returns the names of those turned on.

    float32 and non-CPU models are left as they are (exactness first), and so are models
    whose weights are held in kernel formats (CausalLM.group_weights). Steps of at most
    int8_rows tokens use int8 linears (int8.py; ALL_ROWS: every step, and then no other
    copy of the weights is made); int8_rows = 0 keeps bf16 weights for every batch size.
    Larger steps use oneDNN-prepacked bf16 weights, and with wide_rows > 0 on a CPU
    without AMX (whose bf16 GEMMs are the fast ones) steps of >= wide_rows tokens use
    float32 GEMMs. int4 (with int8 on): steps of 1-2 tokens use int4 weights (int4.py).
    """
    enabled: list[str] = []
    device = model.embed_tokens.weight.device
    if device.type != "cpu":
        return enabled
    start_build()
    enabled.append("cpp-decode-attention")
    if getattr(model, "group_weights", False):  # GGUF blocks held as they are: no other copy
        enabled.append("group-format-linears(one copy)")
        return enabled
    if dtype != torch.bfloat16:
        return enabled
    if int8_rows >= ALL_ROWS:
        model.use_int8(int8_rows)
        enabled.append("int8-linears(all steps)")
        return _with_int4(model, int4, enabled)
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
        return _with_int4(model, int4, enabled)
    return enabled


def _with_int4(model: CausalLM, int4: bool, enabled: list[str]) -> list[str]:
    if int4:
        if model.use_int4():
            enabled.append("int4-weights(1-2 token steps)")
        else:
            log.warning("int4 weights unavailable (a dimension not a multiple of 32)")
    return enabled
