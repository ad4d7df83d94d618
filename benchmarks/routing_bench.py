"""Routing policies compared: N engines behind one gateway, a multi-turn conversation load.

    uv run python benchmarks/routing_bench.py --model smollm2 --engines 2 --threads 1 \
        --policies cache_aware,round_robin --out results/routing -- \
        --turns 4 --conversations 15 --concurrency 4 --input-len 128 --output-len 16

For each policy in turn it starts `--engines` fresh engines (`infer-scheduler`,
`--threads` CPU threads each, own ipc sockets, empty prefix caches) and one
gateway (`infer-server --engine-endpoint ... --routing POLICY`), runs
`infer bench` (everything after `--`; the defaults above without it), keeps
the gateway's `/v1/metrics` (its `engines` list says where requests went),
stops them all, and then prints per policy the prefix cache hit rate and TTFT
(the policies run one after the other on the same machine, so each is the
other's baseline). Writes OUT-POLICY.json (the bench JSON plus "engines").
`--model tiny` builds the tiny random-weight test model in a temp directory.
With an even number of conversations round-robin sends every turn of a
conversation to the same engine (the turns are that many requests apart), so
the default is odd.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from serving import free_port

BIN = Path(sys.executable).parent
DEFAULT_BENCH = (
    "--turns 4 --conversations 15 --concurrency 4 --input-len 128 --output-len 16 --warmup 2"
)


def wait_ready(url: str, procs: list[subprocess.Popen], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args[0]} exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"gateway not ready in {timeout:g} s; see {log}")


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_policy(policy: str, args: argparse.Namespace, bench_args: list[str], run: Path) -> dict:
    """Fresh engines and gateway with `--routing policy`; the bench JSON plus "engines"."""
    out = Path(f"{args.out}-{policy}")
    log_path = out.with_suffix(".log")
    log = log_path.open("w")
    endpoints = [f"ipc://{run}/{policy}-{i}.ipc" for i in range(args.engines)]
    procs: list[subprocess.Popen] = []
    try:
        for endpoint in endpoints:
            engine = [BIN / "infer-scheduler", "--model", args.model, "--endpoint", endpoint]
            engine += ["--device", "cpu", "--threads", str(args.threads)]
            procs.append(subprocess.Popen(engine, stdout=log, stderr=subprocess.STDOUT))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        gateway = [BIN / "infer-server", "--port", str(port), "--routing", policy]
        for endpoint in endpoints:
            gateway += ["--engine-endpoint", endpoint]
        procs.append(subprocess.Popen(gateway, stdout=log, stderr=subprocess.STDOUT))
        wait_ready(url, procs, args.ready_timeout, log_path)
        print(f"== --routing {policy}: {args.engines} engines of {args.model}", flush=True)
        bench = [BIN / "infer", "bench", "--url", url, *bench_args]
        bench += ["--concurrency", str(args.concurrency)] if "--concurrency" not in bench else []
        rc = subprocess.run([*bench, "--json", str(out.with_suffix(".json"))]).returncode
        if rc != 0:
            raise SystemExit(f"infer bench failed with exit status {rc}")
        data = json.loads(out.with_suffix(".json").read_text())
        data["engines"] = httpx.get(url + "/v1/metrics", timeout=10).json().get("engines")
        out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
        return data
    finally:
        stop(procs[::-1])
        log.close()


def summary(policy: str, data: dict) -> str:
    rows = []
    for level in data["levels"]:
        cache = level.get("prefix_cache") or {}
        rate = cache.get("hit_rate")
        ttft, e2e = level["ttft_ms"], level["e2e_ms"]
        rows.append(
            f"{policy:>12} {level['concurrency']:>5} {level['completed']:>4}/{level['requests']:<4}"
            f" {'-' if rate is None else f'{100 * rate:.1f}%':>9}"
            f" {ttft['p50'] or 0:>10.1f} {ttft['p90'] or 0:>10.1f} {e2e['p50'] or 0:>10.1f}"
            f" {level['output_tokens_per_s']:>9.1f}"
        )
    return "\n".join(rows)


def engine_counts(data: dict) -> str:
    """Where requests went: each engine's routed count and own hit rate, when reported."""
    engines = data.get("engines")
    if not isinstance(engines, list):
        return "engines: (the gateway's /v1/metrics has no engines list)"
    keys = ("requests_routed", "completed_requests", "prefix_cache_hit_rate")
    parts = []
    for engine in engines:
        shown = {k: engine[k] for k in keys if isinstance(engine, dict) and k in engine}
        parts.append(", ".join(f"{k} {v}" for k, v in shown.items()) or json.dumps(engine))
    return "engines: " + " | ".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2", help="engine --model, or 'tiny'")
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per engine")
    parser.add_argument("--policies", default="cache_aware,round_robin")
    parser.add_argument("--concurrency", type=int, default=4, help="when the bench args lack it")
    parser.add_argument("--out", default="routing", help="output path prefix")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    args = parser.parse_args(argv[:split])
    bench_args = argv[split + 1 :] if split < len(argv) else DEFAULT_BENCH.split()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="rbench-", dir="/tmp"))  # ipc paths stay short
    try:
        if args.model == "tiny":
            from infer_worker.testing import write_tiny_llama

            args.model = str(write_tiny_llama(run / "tiny"))
        results = {p: run_policy(p, args, bench_args, run) for p in args.policies.split(",")}
    finally:
        shutil.rmtree(run, ignore_errors=True)
    print(f"\nbench: {' '.join(bench_args)}")
    head = f"{'policy':>12} {'conc':>5} {'ok/total':>9} {'hit rate':>9}"
    print(head + f" {'TTFT p50':>10} {'TTFT p90':>10} {'E2E p50':>10} {'tok/s':>9}")
    for policy, data in results.items():
        print(summary(policy, data))
    for policy, data in results.items():
        print(f"{policy} {engine_counts(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
