"""Time x @ W^T for one 1B-shaped layer in each weight path, weights cycled past the caches.

Usage: uv run python benchmarks/quant_linears.py [--repeats 15] [--threads 2] [--cpu-time]

Each path gets several copies of the weight (more bytes than the L3 cache) used in turn,
so every call streams its weight from DRAM as a model's decode step does; the figure is
the minimum over the repeats (the machine may be shared). --cpu-time runs one thread
and counts its CPU time (time.thread_time), which time slices lost to other processes on
a busy machine do not inflate (memory-bandwidth contention still does). Paths: bf16 (oneDNN), the int8
linear of int8.py (weight-only for <= 2 rows, W8A8 above), torch's int4 kernel with bf16
scales (int4.py), and the group-format kernels of infer_worker.quant (4-bit and 8-bit).
"""

from __future__ import annotations

import argparse
import time

import torch

from infer_worker.cpp_kernels import start_build
from infer_worker.int4 import Int4Weight
from infer_worker.int8 import Int8Weight
from infer_worker.quant import kernels
from infer_worker.quant.formats import quantize_int4, quantize_int8

SHAPES = ((2048, 2048), (8192, 2048), (2048, 8192))  # (out, in): q/o, gate/up, down
COPIES_BYTES = 96 << 20


def timed(fn, copies: list, x: torch.Tensor, repeats: int, clock=time.perf_counter) -> float:
    """Minimum ms per call over repeats, each repeat a call on every copy in turn."""
    for w in copies:
        fn(x, w)
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        for w in copies:
            fn(x, w)
        best = min(best, (clock() - start) / len(copies))
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--cpu-time", action="store_true", help="one thread, its CPU time")
    args = parser.parse_args()
    torch.set_num_threads(1 if args.cpu_time else args.threads)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    start_build(wait=True)
    kernels.module()
    print(kernels.plan().describe())
    for out_f, in_f in SHAPES:
        n = max(2, COPIES_BYTES // (out_f * in_f * 2))
        weights = [torch.randn(out_f, in_f).bfloat16() for _ in range(n)]
        paths = {
            "bf16": ([w for w in weights], lambda x, w: torch.nn.functional.linear(x, w)),
            "int8": ([Int8Weight(w, 1 << 20) for w in weights], lambda x, w: w.matmul(x)),
            "int4 torch": ([Int4Weight(w) for w in weights], lambda x, w: w.matmul(x)),
            "g4": ([quantize_int4(w) for w in weights], kernels.group_matmul),
            "g8": ([quantize_int8(w) for w in weights], kernels.group_matmul),
        }
        del weights
        for rows in args.rows:
            x = torch.randn(rows, in_f).bfloat16()
            cells = []
            for name, (copies, fn) in paths.items():
                if name == "int4 torch" and rows > 2:
                    continue  # used for <= 2 rows only (int8.py)
                cells.append(f"{name} {timed(fn, copies, x, args.repeats, clock):.3f}")
            print(f"{out_f}x{in_f} rows={rows}: " + "  ".join(cells) + " ms", flush=True)


if __name__ == "__main__":
    main()
