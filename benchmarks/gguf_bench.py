"""Serve random-weight GGUF models of real shapes and bench them against the DRAM floor.

    uv run python benchmarks/gguf_bench.py --shape llama-3.2-1b --kind Q4_K_M \
        --concurrency 1,32 --requests 32 --dir /tmp/gguf-bench --out results/gguf-1b

For each (shape, kind): writes the file with gguf_models.py (kept in --dir for reuse),
measures the memory-bandwidth floor in the same run (the bytes of weights one decode
step reads, over the read bandwidth of a 1 GiB buffer with the engine's thread count),
starts `infer serve --model FILE --kv-cache-tokens N`, records the engine's RSS once
ready, runs `infer bench` (ignore_eos is its default) and prints one table row per
concurrency level: ITL p50 against the floor, output tok/s, TTFT p50, RSS. The 8B shape
needs ~6 GB of file and ~24 GB of machine; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import psutil
import torch
from gguf_models import SHAPES, write_model
from serving import BIN, served

from infer_worker.gguf_reader import read_gguf


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def read_bandwidth_gbs(threads: int, repeats: int = 7) -> float:
    """Best read bandwidth (GB/s) summing a 1 GiB float32 buffer with `threads` threads."""
    torch.set_num_threads(threads)
    buf = torch.ones(1 << 28)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        buf.sum()
        best = min(best, time.perf_counter() - start)
    return buf.nbytes / best / 1e9


def step_bytes(path: Path) -> int:
    """Weight bytes one decode step reads: all tensors, but one row of an untied embedding."""
    _, tensors = read_gguf(path)
    names = {t.name for t in tensors}
    total = 0
    for t in tensors:
        if t.name == "token_embd.weight" and "output.weight" in names:
            total += t.data.shape[-1]
        else:
            total += t.data.nbytes
    return total


def engine_rss_gb(server: subprocess.Popen) -> float:
    """RSS of the launcher's child processes (the engine), in GB."""
    children = psutil.Process(server.pid).children(recursive=True)
    return sum(c.memory_info().rss for c in children) / 1e9


def serve_bench(model: Path, serve_args: list[str], bench_args: list[str], out: Path) -> dict:
    log = out.with_suffix(".serve.log")
    with served(["--model", str(model), *serve_args], log, 900) as (url, server):
        rss = engine_rss_gb(server)
        result = out.with_suffix(".json")
        cmd = [BIN / "infer", "bench", "--url", url, *bench_args, "--json", str(result)]
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit("infer bench failed")
        report = json.loads(result.read_text())
        report["engine_rss_gb_ready"] = rss
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), nargs="+", default=["llama-3.2-1b"])
    parser.add_argument("--kind", choices=["Q4_K_M", "Q8_0"], nargs="+", default=["Q4_K_M"])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/gguf-bench"))
    parser.add_argument("--out", type=Path, default=Path("results/gguf-bench"))
    parser.add_argument("--kv-cache-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--serve-args", default="", help="extra flags of `infer serve`")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bandwidth = read_bandwidth_gbs(args.threads)
    print(f"CPU: {cpu_model()}; read bandwidth {bandwidth:.1f} GB/s with {args.threads} threads")
    serve = ["--kv-cache-tokens", str(args.kv_cache_tokens), *args.serve_args.split()]
    bench = ["--concurrency", args.concurrency, "--requests", str(args.requests)]
    bench += ["--input-len", str(args.input_len), "--output-len", str(args.output_len)]
    rows = []
    for shape in args.shape:
        for kind in args.kind:
            model = args.dir / f"{shape}-{kind}.gguf"
            if not model.exists():
                write_model(model, shape, kind)
            floor_ms = step_bytes(model) / bandwidth / 1e6
            out = args.out.with_name(f"{args.out.name}-{shape}-{kind}")
            report = serve_bench(model, serve, bench, out)
            for level in report["levels"]:
                itl = level["itl_ms"]["p50"]
                rows.append(
                    f"| {shape} {kind} | {model.stat().st_size / 1e9:.2f} GB | "
                    f"{level['concurrency']} | {itl:.1f} ms | {floor_ms:.1f} ms | "
                    f"{itl / floor_ms:.2f}x | {level['output_tokens_per_s']:.1f} | "
                    f"{level['ttft_ms']['p50']:.0f} ms | {report['engine_rss_gb_ready']:.2f} GB |"
                )
    print("| model | file | streams | ITL p50 | floor | ITL/floor | out tok/s | TTFT p50 | RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
