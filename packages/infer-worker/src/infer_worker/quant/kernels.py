"""The group-format matmul x @ W^T on the CPU: which path runs, chosen once per machine.

Paths (`plan()` picks them from /proc/cpuinfo and logs the choice):
- "kernel": csrc/group_linear.cpp, weight-only, each weight byte read once per 8 input rows;
  used up to `Plan.kernel_rows` rows (decode steps). Built with -march=native on first use
  (tens of seconds, cached under ~/.cache/torch_extensions/infer_quant_kernels).
- "tiles": rows of W dequantized to bf16 (float32 for float32 input) a tile at a time
  (never the whole weight) and multiplied by oneDNN's GEMM in that dtype (bf16: AMX tiles
  on Sapphire Rapids and later, AVX-512-BF16 elsewhere); used for more rows (prefill),
  and on AMX machines from fewer rows.
- "reference": float32 dequantize + matmul in torch; what tests compare against, and the
  path when no compiler is available.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from .formats import GroupWeight

log = logging.getLogger("infer_worker")

_NAME = "infer_quant_kernels"
_SOURCE = (Path(__file__).parent / "csrc" / "group_linear.cpp").read_text()
_FUNCTIONS = ["group_linear", "group_dequant", "group_linear_avx512"]
_CFLAGS = ("-O3", "-march=native", "-fopenmp")
_TILE_ROWS = 512  # output rows dequantized at once on the tiles path
_lock = threading.Lock()


@dataclass(frozen=True)
class Plan:
    """Which path serves x [M, K]: the kernel for M <= kernel_rows, tiles above."""

    features: tuple[str, ...]
    kernel_rows: int

    def describe(self) -> str:
        return (
            f"group-format linears: C++ kernel for <= {self.kernel_rows} rows, "
            f"bf16 tiles + oneDNN above (cpu: {', '.join(self.features) or 'no AVX-512'})"
        )


def cpu_flags() -> set[str]:
    """The flags line of /proc/cpuinfo (empty when unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@cache
def plan() -> Plan:
    """The machine's plan, logged once. The kernel streams the weight once per call, which
    is what a 1-4 row decode step needs; above that oneDNN's bf16 GEMM on dequantized tiles
    does more work per byte (benchmarks/quant_linears.py). With AMX (about 7x AVX-512's bf16
    GEMM rate, docs/benchmarks.md) tiles take over from 2 rows."""
    flags = cpu_flags()
    wanted = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    features = tuple(f for f in wanted if f in flags)
    rows = 1 if "amx_bf16" in flags else 4
    chosen = Plan(features, rows)
    log.info(chosen.describe())
    return chosen


def _cache_path() -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or str(Path.home() / ".cache/torch_extensions")
    cpu = " ".join(sorted(cpu_flags()))
    key = hashlib.sha256(f"{_SOURCE}{_CFLAGS}{torch.__version__}{cpu}".encode()).hexdigest()[:16]
    return Path(root) / _NAME / f"{_NAME}-{key}.so"


@cache
def module() -> Any | None:
    """The built kernels (building them on first call), or None when they cannot be built."""
    with _lock:
        try:
            target = _cache_path()
            if not target.exists():
                _build(target)
            spec = importlib.util.spec_from_file_location(_NAME, target)
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
            return loaded
        except Exception as exc:  # no compiler or headers: the reference path stays
            log.warning("group-format C++ kernels unavailable, using torch: %s", exc)
            return None


def _build(target: Path) -> None:
    from torch.utils.cpp_extension import load_inline

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        load_inline(
            name=_NAME,
            cpp_sources=[_SOURCE],
            functions=_FUNCTIONS,
            extra_cflags=list(_CFLAGS),
            build_directory=tmp,
            verbose=False,
        )
        partial = target.with_suffix(f".{os.getpid()}.part")
        shutil.copyfile(Path(tmp) / f"{_NAME}.so", partial)
        os.replace(partial, target)


def reference_matmul(x: torch.Tensor, weight: GroupWeight) -> torch.Tensor:
    """x [M, K] @ dequantized weight^T in float32 -> [M, N] float32."""
    return x.float() @ weight.dequantize().t()


def kernel_matmul(x: torch.Tensor, weight: GroupWeight) -> torch.Tensor:
    """The C++ kernel path -> [M, N] in x's dtype."""
    built = module()
    if built is None:
        return reference_matmul(x, weight).to(x.dtype)
    return built.group_linear(x, weight.q, weight.scale, weight.offset, weight.bits, weight.group)


def tiles_matmul(x: torch.Tensor, weight: GroupWeight) -> torch.Tensor:
    """Tiles of the weight through oneDNN's GEMM -> [M, N] in x's dtype: bf16 tiles, or
    float32 ones for float32 x (a float32 model's prefill stays float32)."""
    built = module()
    rows, _ = weight.shape
    exact = x.dtype == torch.float32
    xb = x if exact else x.to(torch.bfloat16)
    out = torch.empty(x.shape[0], rows, dtype=xb.dtype)
    for start in range(0, rows, _TILE_ROWS):
        end = min(rows, start + _TILE_ROWS)
        if built is None or exact:
            tile = weight.dequantize(slice(start, end)).to(xb.dtype)
        else:
            tile = built.group_dequant(
                weight.q, weight.scale, weight.offset, weight.bits, weight.group, start, end
            )
        out[:, start:end] = torch.mm(xb, tile.t())
    return out.to(x.dtype)


def group_matmul(x: torch.Tensor, weight: GroupWeight) -> torch.Tensor:
    """x [M, K] @ W^T -> [M, N] in x's dtype, by the machine's plan."""
    if x.shape[0] <= plan().kernel_rows:
        return kernel_matmul(x, weight)
    return tiles_matmul(x, weight)
