"""Soak: mixed load with random disconnects against a real engine + gateway.

Starts `infer-scheduler` and `infer-server` (console scripts next to this
Python), runs `--concurrency` client loops for `--duration` seconds (streamed
and non-streamed chat completions, some dropped mid-stream), samples the
resident memory (RSS) of both processes every `--sample-every` seconds and
reports whether it stayed flat after `--warmup` seconds. Bounded in time:
it always stops after the duration plus a short drain.

    uv run python benchmarks/soak.py --model tiny --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    out = log.open("w")
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("a process exited during startup; see the logs")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the gateway was not ready in time")


async def client_loop(
    client: httpx.AsyncClient, url: str, rng: random.Random, stop: float, seen: Counter
) -> None:
    """One simulated user: stream or not, sometimes give up early."""
    loop = asyncio.get_running_loop()
    while loop.time() < stop:
        body = {
            "model": "soak",
            "messages": [{"role": "user", "content": f"soak {rng.random()} " * rng.randint(1, 20)}],
            "max_tokens": rng.randint(1, 64),
            "temperature": rng.choice([0.0, 0.8]),
            "stream": rng.random() < 0.6,
        }
        drop_after = rng.uniform(0.05, 1.0) if rng.random() < 0.25 else None
        try:
            async with asyncio.timeout(drop_after or 120):
                if body["stream"]:
                    async with client.stream("POST", url, json=body) as r:
                        async for _ in r.aiter_lines():
                            pass
                        seen[f"stream {r.status_code}"] += 1
                else:
                    r = await client.post(url, json=body)
                    seen[f"plain {r.status_code}"] += 1
        except TimeoutError:
            seen["dropped" if drop_after else "client timeout"] += 1
        except httpx.HTTPError as exc:
            seen[f"http error {type(exc).__name__}"] += 1


async def sampler(pids: dict[str, int], every: float, stop: float, samples: list[dict]) -> None:
    loop = asyncio.get_running_loop()
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    t0 = loop.time()
    while True:
        row = {"t": round(loop.time() - t0, 1)}
        row.update({name: p.memory_info().rss / 2**20 for name, p in procs.items()})
        row["load"] = os.getloadavg()[0]
        samples.append(row)
        print(
            f"t={row['t']:6.1f}s engine={row['engine']:7.1f} MiB gateway={row['gateway']:7.1f} MiB"
            f" load={row['load']:.1f}",
            flush=True,
        )
        if loop.time() >= stop:
            return
        await asyncio.sleep(min(every, max(0.0, stop - loop.time())))


def verdict(samples: list[dict], warmup: float, tolerance_mib: float) -> dict:
    """Compare the first and last third of the samples taken after warm-up."""
    after = [s for s in samples if s["t"] >= warmup]
    out: dict = {}
    for name in ("engine", "gateway"):
        values = [s[name] for s in after]
        k = max(1, len(values) // 3)
        first, last = statistics.median(values[:k]), statistics.median(values[-k:])
        out[name] = {
            "after_warmup_first_mib": round(first, 1),
            "last_mib": round(last, 1),
            "growth_mib": round(last - first, 1),
            "max_mib": round(max(values), 1),
            "flat": last - first <= tolerance_mib,
        }
    return out


async def soak(args: argparse.Namespace, url: str, pids: dict[str, int]) -> dict:
    loop = asyncio.get_running_loop()
    stop = loop.time() + args.duration
    seen: Counter = Counter()
    samples: list[dict] = []
    rng = random.Random(args.seed)
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        tasks = [
            client_loop(
                client, url + "/v1/chat/completions", random.Random(rng.random()), stop, seen
            )
            for _ in range(args.concurrency)
        ]
        await asyncio.gather(sampler(pids, args.sample_every, stop, samples), *tasks)
    metrics = httpx.get(url + "/v1/metrics", timeout=10).json()
    return {"outcomes": dict(seen), "samples": samples, "metrics": metrics}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="tiny", help="'tiny' (a random-weight Llama) or any --model")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    p.add_argument("--warmup", type=float, default=120.0, help="seconds ignored by the verdict")
    p.add_argument("--sample-every", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--tolerance-mib", type=float, default=32.0, help="allowed growth per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--kv-cache-tokens", type=int, default=32768, help="engine KV cache size (0: its default)"
    )
    p.add_argument("--json", type=Path, default=None, help="write the full result here")
    args = p.parse_args()

    bindir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
    model = args.model
    if model == "tiny":
        from infer_worker.testing import write_tiny_llama

        model = str(write_tiny_llama(work / "tiny"))
    endpoint = f"ipc://{work}/engine.ipc"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    engine = start(
        [
            str(bindir / "infer-scheduler"),
            "--model",
            model,
            "--endpoint",
            endpoint,
            "--served-model-name",
            "soak",
        ],
        work / "engine.log",
    )
    gateway = start(
        [
            str(bindir / "infer-server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--engine-endpoint",
            endpoint,
            "--log-level",
            "warning",
        ],
        work / "gateway.log",
    )
    try:
        wait_ready(url, gateway)
        result = asyncio.run(soak(args, url, {"engine": engine.pid, "gateway": gateway.pid}))
    finally:
        for proc in (gateway, engine):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    result["verdict"] = verdict(result["samples"], args.warmup, args.tolerance_mib)
    result["args"] = {k: str(v) for k, v in vars(args).items()}
    result["load_average"] = os.getloadavg()
    loads = [s["load"] for s in result["samples"]]
    result["load_average_during"] = {"min": min(loads), "max": max(loads)}
    keys = ("outcomes", "verdict", "load_average_during")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    flat = all(v["flat"] for v in result["verdict"].values())
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
