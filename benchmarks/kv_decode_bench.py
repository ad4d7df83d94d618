"""Decode attention time per layer over bf16 pages vs int8 pages (the C++ paged decode kernel).

    uv run python benchmarks/kv_decode_bench.py [--reps 30] [--rounds 3] [--threads 1]

For each model shape and batch (sequences x tokens) it times one layer's decode attention
(`paged_decode` on bf16 pages, `paged_decode_int8` on int8 pages with float32 or bfloat16
row scales) on scattered 16-token pages, and prints the median over rounds (min-max) of the
median of `reps` calls per round, the rounds interleaved so that a busy machine slows every
kind alike. With one thread (the default) a call is timed by the thread's CPU time, which
does not count the time other processes of a shared machine hold the core.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from infer_worker.cpp_kernels import decode_int8_kernel, decode_kernel, start_build
from infer_worker.kv_quant import quantize_rows

SHAPES = {
    "SmolLM2-135M (9/3 heads, d64)": (9, 3, 64),
    "Llama-3.2-1B (32/8 heads, d64)": (32, 8, 64),
}
BATCHES = ((32, 190), (8, 2000))
BLOCK = 16


def pages(seqs: int, tokens: int, heads: int, kv_heads: int, dim: int):
    """bf16 query, pages and block tables of `seqs` sequences of `tokens` tokens each."""
    gen = torch.Generator().manual_seed(0)
    per_seq = -(-tokens // BLOCK)
    blocks = seqs * per_seq + 1
    keys = torch.randn(blocks, BLOCK, kv_heads, dim, generator=gen).bfloat16()
    values = torch.randn(blocks, BLOCK, kv_heads, dim, generator=gen).bfloat16()
    tables = (torch.randperm(blocks - 1, generator=gen) + 1)[: seqs * per_seq]
    tables = tables.view(seqs, per_seq).to(torch.int32)
    query = torch.randn(seqs, heads, dim, generator=gen).bfloat16()
    lens = torch.full((seqs,), tokens, dtype=torch.int32)
    return query, keys, values, tables, lens


def median_ms(call, reps: int, clock) -> float:
    call()
    times = []
    for _ in range(reps):
        start = clock()
        call()
        times.append(clock() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start_build(wait=True)
    bf16, int8 = decode_kernel(), decode_int8_kernel()
    if bf16 is None or int8 is None:
        raise SystemExit("the C++ kernels did not build")
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    print(f"torch threads: {torch.get_num_threads()}, clock: {clock.__name__}")
    print("| shape | batch | bf16 pages | int8 + f32 scales | int8 + bf16 scales |")
    print("|---|---|---:|---:|---:|")
    for name, (heads, kv_heads, dim) in SHAPES.items():
        for seqs, tokens in BATCHES:
            q, k, v, tables, lens = pages(seqs, tokens, heads, kv_heads, dim)
            scale = dim**-0.5
            rest = (tables, lens, scale, 0, 0.0)
            calls = {"bf16": functools.partial(bf16, q, k, v, *rest)}
            for sd in (torch.float32, torch.bfloat16):
                kq, ks = quantize_rows(k, sd)
                vq, vs = quantize_rows(v, sd)
                calls[str(sd)] = functools.partial(int8, q, kq, vq, ks, vs, *rest)
            got: dict[str, list[float]] = {key: [] for key in calls}
            for _ in range(args.rounds):
                for key, call in calls.items():
                    got[key].append(median_ms(call, args.reps, clock))
            cells = [
                f"{statistics.median(t):.3f} ms ({min(t):.3f}-{max(t):.3f})" for t in got.values()
            ]
            print(f"| {name} | {seqs} x {tokens} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
