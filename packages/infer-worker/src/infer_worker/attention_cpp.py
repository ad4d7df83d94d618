"""A small C++ paged decode-attention kernel for the CPU (built with load_inline).

It reads K/V pages in place through the block tables (no gather, no
padding): one work item per (sequence, kv head) covers the kv head's whole
group of query heads, scores and softmax in float32, threads from torch's
own pool (at::parallel_for). Built once per machine into
~/.cache/torch_extensions/infer_paged_decode (or under TORCH_EXTENSIONS_DIR),
keyed by source, flags, torch version and CPU flags; the first build
takes tens of seconds, so `start_build()` runs it in a background thread and
`decode_kernel()` returns None until it is ready (callers then use the torch
path). Any build failure (no compiler) leaves the torch path in use for good.
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

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>

template <typename T>
static void decode_impl(const torch::Tensor& q, const torch::Tensor& kc, const torch::Tensor& vc,
                        const torch::Tensor& tables, const torch::Tensor& lens, double scale,
                        torch::Tensor& out) {
  const int64_t S = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t BS = kc.size(1), KVH = kc.size(2), G = H / KVH, W = tables.size(1);
  const T* qp = q.data_ptr<T>();
  const T* kp = kc.data_ptr<T>();
  const T* vp = vc.data_ptr<T>();
  const int32_t* tp = tables.data_ptr<int32_t>();
  const int32_t* lp = lens.data_ptr<int32_t>();
  T* op = out.data_ptr<T>();
  const float sc = static_cast<float>(scale);
  TORCH_CHECK(tables.size(0) == S && lens.size(0) == S && kc.size(0) == vc.size(0),
              "paged_decode: shapes disagree");
  for (int64_t s = 0; s < S; ++s) {  // every page read must exist: no out-of-bounds reads
    TORCH_CHECK(lp[s] >= 1 && lp[s] <= W * BS, "paged_decode: seq_len outside the block table");
    for (int64_t b = 0; b < (lp[s] + BS - 1) / BS; ++b)
      TORCH_CHECK(tp[s * W + b] >= 0 && tp[s * W + b] < kc.size(0), "paged_decode: bad block id");
  }
  at::parallel_for(0, S * KVH, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf(G * D), acc(G * D), scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t s = item / KVH, h = item % KVH, L = lp[s];
      scores.resize(G * L);
      for (int64_t g = 0; g < G; ++g)
        for (int64_t d = 0; d < D; ++d)
          qf[g * D + d] = static_cast<float>(qp[(s * H + h * G + g) * D + d]) * sc;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t slot = static_cast<int64_t>(tp[s * W + t / BS]) * BS + t % BS;
        const T* k = kp + (slot * KVH + h) * D;
        for (int64_t g = 0; g < G; ++g) {
          const float* qg = qf.data() + g * D;
          float dot = 0.f;
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < D; ++d) dot += qg[d] * static_cast<float>(k[d]);
          scores[g * L + t] = dot;
        }
      }
      for (int64_t g = 0; g < G; ++g) {
        float* row = scores.data() + g * L;
        float mx = -INFINITY, sum = 0.f;
        for (int64_t t = 0; t < L; ++t) mx = std::max(mx, row[t]);
        for (int64_t t = 0; t < L; ++t) { row[t] = std::exp(row[t] - mx); sum += row[t]; }
        const float inv = 1.f / sum;
        for (int64_t t = 0; t < L; ++t) row[t] *= inv;
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t slot = static_cast<int64_t>(tp[s * W + t / BS]) * BS + t % BS;
        const T* v = vp + (slot * KVH + h) * D;
        for (int64_t g = 0; g < G; ++g) {
          const float p = scores[g * L + t];
          float* a = acc.data() + g * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) a[d] += p * static_cast<float>(v[d]);
        }
      }
      for (int64_t g = 0; g < G; ++g)
        for (int64_t d = 0; d < D; ++d)
          op[(s * H + h * G + g) * D + d] = static_cast<T>(acc[g * D + d]);
    }
  });
}

torch::Tensor paged_decode(torch::Tensor q, torch::Tensor kc, torch::Tensor vc,
                           torch::Tensor tables, torch::Tensor lens, double scale) {
  TORCH_CHECK(q.is_contiguous() && kc.is_contiguous() && vc.is_contiguous(), "contiguous inputs");
  TORCH_CHECK(q.dim() == 3 && kc.dim() == 4 && vc.sizes() == kc.sizes() && tables.dim() == 2,
              "paged_decode: q [S,H,D], caches [blocks,block,kv_heads,D], tables [S,W]");
  TORCH_CHECK(kc.scalar_type() == q.scalar_type() && vc.scalar_type() == q.scalar_type(),
              "paged_decode: q and caches must share a dtype");
  TORCH_CHECK(q.size(2) == kc.size(3) && q.size(1) % kc.size(2) == 0, "paged_decode: head shapes");
  TORCH_CHECK(tables.scalar_type() == torch::kInt32 && lens.scalar_type() == torch::kInt32,
              "int32 tables and lens");
  auto t = tables.contiguous();
  auto l = lens.contiguous();
  auto out = torch::empty_like(q);
  if (q.scalar_type() == torch::kBFloat16) {
    decode_impl<at::BFloat16>(q, kc, vc, t, l, scale, out);
  } else if (q.scalar_type() == torch::kFloat32) {
    decode_impl<float>(q, kc, vc, t, l, scale, out);
  } else {
    TORCH_CHECK(false, "paged_decode: float32 or bfloat16 only");
  }
  return out;
}
"""

_NAME = "infer_paged_decode"
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
    return Path(root) / "infer_paged_decode" / f"{_NAME}-{key}.so"


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
                functions=["paged_decode"],
                extra_cflags=list(_CFLAGS),
                build_directory=tmp,
                verbose=False,
            )
            partial = target.with_suffix(f".{os.getpid()}.part")
            shutil.copyfile(Path(tmp) / f"{_NAME}.so", partial)
            os.replace(partial, target)
        _state["module"] = module
    except Exception as exc:  # no compiler, or headers missing: the torch path stays
        log.warning("C++ paged decode kernel unavailable, using the torch path: %s", exc)
        _state["failed"] = True


def start_build(wait: bool = False) -> None:
    """Build (or load from the cache) the kernel; in a background thread unless wait."""
    with _lock:
        thread = _state["thread"]
        if thread is None and _state["module"] is None and not _state["failed"]:
            thread = threading.Thread(target=_build, name="paged-decode-build", daemon=True)
            _state["thread"] = thread
            thread.start()
    if wait and thread is not None:
        thread.join()


def decode_kernel() -> Any | None:
    """The built paged_decode function, or None while building / when unavailable."""
    module = _state["module"]
    return None if module is None else module.paged_decode
