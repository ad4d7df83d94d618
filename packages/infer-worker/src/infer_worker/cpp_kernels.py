"""The C++ CPU kernels of csrc/, built with load_inline into one library.

csrc/paged_decode.cpp reads K/V pages in place through the block tables (no
gather, no padding): one work item per (sequence, kv head) covers the kv
head's whole group of query heads, scores and softmax in float32, threads
from torch's own pool (at::parallel_for); paged_decode_int8 reads int8 pages
with their row scales (kv_quant.py) the same way, and csrc/kv_write.cpp
quantizes new K/V rows into them (kv_write_int8). csrc/int8_linear.cpp is the W8A8
linear of int8.py, csrc/fused.cpp the fused bf16 steps of fused_cpu.py, and
csrc/ops.cpp registers the first two as dispatcher ops (`infer_cpu::*`) for
compiled graphs. They are built once per machine under
~/.cache/torch_extensions/infer_cpu_kernels (or under TORCH_EXTENSIONS_DIR),
keyed by source, flags, torch version and CPU flags; the first build takes
tens of seconds, so `start_build()` runs it in a background thread and
`decode_kernel()`, `decode_int8_kernel()`, `int8_kernel()` and `fused_kernels()` return None until it
is ready (callers then use their torch paths). Any build failure (no
compiler) leaves the torch paths in use for good.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("infer_worker")

_SOURCE_FILES = (
    "common.h",
    "paged_decode.cpp",
    "kv_write.cpp",
    "int8_linear.cpp",
    "fused.cpp",
    "ops.cpp",
)
_SOURCE = "\n".join((Path(__file__).parent / "csrc" / name).read_text() for name in _SOURCE_FILES)
_FUNCTIONS = [
    "paged_decode",
    "paged_decode_int8",
    "kv_write_int8",
    "int8_linear",
    "rms_norm_bf16",
    "rotary_bf16",
    "silu_mul_bf16",
]

_NAME = "infer_cpu_kernels"
_CFLAGS = ("-O3", "-march=native", "-fopenmp")
_lock = threading.Lock()
_state: dict[str, Any] = {"module": None, "thread": None, "failed": False}


def _cache_path() -> Path:
    """Where the built library is kept: keyed by source, flags, torch version and CPU."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or str(
        Path.home() / ".cache" / "torch_extensions"
    )
    # -march=native: a library built on another CPU could crash here, so the CPU is in the key
    cpu = platform.machine() + _cpu_flags()
    key = hashlib.sha256(f"{_SOURCE}{_CFLAGS}{torch.__version__}{cpu}".encode()).hexdigest()[:16]
    return Path(root) / _NAME / f"{_NAME}-{key}.so"


def _cpu_flags() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line for line in lines if line.startswith("flags")), "")


def _remove_stale_builds(folder: Path, age_s: float = 3600.0) -> None:
    """Delete build directories a killed process left behind (older than age_s)."""
    now = time.time()
    for stale in folder.glob("tmp*"):
        try:
            if stale.is_dir() and now - stale.stat().st_mtime > age_s:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass


def _import(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(_NAME, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build() -> None:
    """Load the cached library, or build it in a private directory and publish it atomically.

    Builders never share a directory (no lock file a killed process could leave behind);
    a concurrent builder simply builds too, and the last os.replace wins.
    """
    try:
        target = _cache_path()
        if target.exists():
            _state["module"] = _import(target)
            return
        from torch.utils.cpp_extension import load_inline

        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(target.parent)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            module = load_inline(
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
        _state["module"] = module
    except Exception as exc:  # no compiler, or headers missing: the torch path stays
        log.warning("C++ CPU kernels unavailable, using the torch paths: %s", exc)
        _state["failed"] = True


def start_build(wait: bool = False) -> None:
    """Build (or load from the cache) the kernels; in a background thread unless wait."""
    with _lock:
        thread = _state["thread"]
        if thread is None and _state["module"] is None and not _state["failed"]:
            thread = threading.Thread(target=_build, name="cpu-kernels-build", daemon=True)
            _state["thread"] = thread
            thread.start()
    if wait and thread is not None:
        thread.join()


def decode_kernel() -> Any | None:
    """The built paged_decode function, or None while building / when unavailable."""
    module = _state["module"]
    return None if module is None else module.paged_decode


def decode_int8_kernel() -> Any | None:
    """The built paged_decode_int8 function (int8 pages), or None while building / unavailable."""
    module = _state["module"]
    return None if module is None else module.paged_decode_int8


def kv_write_int8_kernel() -> Any | None:
    """The built kv_write_int8 function (quantize and store K/V rows), or None."""
    module = _state["module"]
    return None if module is None else module.kv_write_int8


def int8_kernel() -> Any | None:
    """The built int8_linear function, or None while building / when unavailable."""
    module = _state["module"]
    return None if module is None else module.int8_linear


def fused_kernels() -> Any | None:
    """The built module (rms_norm_bf16, rotary_bf16, silu_mul_bf16), or None."""
    return _state["module"]
