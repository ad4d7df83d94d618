"""Engine memory under mixed load, in-process (no gateway, no sockets).

Drives an `Engine` with soak-like traffic (chat-shaped prompts sharing a
prefix, greedy and sampled, seeds, logprobs, stop ids, aborts mid-way) and
samples RSS, glibc's main-arena figures (mallinfo2: in use vs free), the
`[heap]` mapping, Python object counts by type and, with --tracemalloc,
the top Python allocation growth between warm-up and the end.

    uv run python benchmarks/engine_memory.py --model tiny --requests 4000
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import psutil

from infer_protocol import GenerateRequest, SamplingParams
from infer_worker.heap import malloc_stats


def heap_kib() -> int:
    """Resident KiB of the [heap] mapping."""
    size, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
            inside = line.endswith("[heap]")
        elif inside and line.startswith("Rss:"):
            size += int(line.split()[1])
    return size


def sample(engine, done: int, t0: float) -> dict:
    mi = malloc_stats()
    cache = engine.cache.cache
    return {
        "t": round(time.monotonic() - t0, 1),
        "done": done,
        "rss": round(psutil.Process().memory_info().rss / 2**20, 1),
        "heap": round(heap_kib() / 1024, 1),
        "arena_used": round(mi["arena_used"], 1),
        "arena_free": round(mi["arena_free"], 1),
        "mmapped": round(mi["mmapped"], 1),
        "objects": len(gc.get_objects()),
        "requests": len(engine.requests),
        "nodes": cache.node_count if cache else 0,
    }


def make_prompt(rng: random.Random, prefix: list[int], vocab: int) -> list[int]:
    body = [rng.randrange(300, vocab) for _ in range(rng.randint(4, 120))]
    return prefix + body + prefix[:5]


def make_params(rng: random.Random) -> SamplingParams:
    greedy = rng.random() < 0.5
    top = rng.choice([0, 0, 0, 3])
    return SamplingParams(
        temperature=0.0 if greedy else 0.8,
        seed=rng.randrange(1 << 30) if rng.random() < 0.3 else None,
        logprobs=top > 0 or rng.random() < 0.2,
        top_logprobs=top,
        presence_penalty=rng.choice([0.0, 0.0, 0.5]),
        repetition_penalty=rng.choice([1.0, 1.0, 1.1]),
    )


def run(args: argparse.Namespace) -> dict:
    import torch

    from infer_scheduler import Engine, EngineOptions
    from infer_worker import load_model
    from infer_worker.cpu_serving import prepare_cpu_serving, serving_dtype

    model = args.model
    if model == "tiny":
        from infer_worker.testing import write_tiny_llama

        model = str(write_tiny_llama(Path(tempfile.mkdtemp()) / "tiny"))
    dtype = serving_dtype(args.dtype, torch.device("cpu"))
    bundle = load_model(model, device="cpu", dtype=dtype)
    if args.serving:  # what `infer-scheduler` turns on (its default flags)
        print("fast paths:", prepare_cpu_serving(bundle.model, bundle.dtype, 8, 64))
    opts = {"kv_cache_tokens": args.kv_cache_tokens} if args.kv_cache_tokens else {}
    engine = Engine(bundle, EngineOptions(**opts))
    rng = random.Random(args.seed)
    vocab = bundle.config.vocab_size
    prefix = [rng.randrange(300, vocab) for _ in range(40)]
    aborts: dict[str, int] = {}
    ids = iter(range(10**9))
    done, steps, samples = 0, 0, []
    t0 = time.monotonic()
    snap = None
    while done < args.requests:
        while len(engine.requests) < args.concurrency:
            rid = f"r{next(ids)}"
            n = rng.choice([1, 1, 1, 2, 3])  # n>1: the same prompt sent n times
            prompt = make_prompt(rng, prefix, vocab)
            for k in range(n):
                engine.add_request(
                    GenerateRequest(
                        request_id=f"{rid}-{k}",
                        input_ids=prompt,
                        sampling=make_params(rng),
                        max_tokens=rng.randint(1, 64),
                        stop_token_ids=[rng.randrange(vocab)] if rng.random() < 0.2 else [],
                    ),
                    enforce_capacity=False,
                )
                if rng.random() < 0.25:
                    aborts[f"{rid}-{k}"] = steps + rng.randint(1, 40)
        for rid in [r for r, at in aborts.items() if at <= steps]:
            engine.abort(rid)
            del aborts[rid]
        for delta in engine.step():
            if delta.finished:
                done += 1
                aborts.pop(delta.request_id, None)
        steps += 1
        if steps % args.sample_steps == 0:
            row = sample(engine, done, t0)
            samples.append(row)
            print(json.dumps(row), flush=True)
            if args.tracemalloc and snap is None and done >= args.requests * args.warmup:
                gc.collect()
                snap = tracemalloc.take_snapshot()
                counts0 = Counter(type(o).__name__ for o in gc.get_objects())
    while engine.has_work:
        engine.step()
    gc.collect()
    samples.append(sample(engine, done, t0))
    print(json.dumps(samples[-1]), flush=True)
    if args.tracemalloc and snap is not None:
        end = tracemalloc.take_snapshot()
        print("--- tracemalloc growth since warm-up (top 15 by traceback)")
        for stat in end.compare_to(snap, "traceback")[:15]:
            print(stat)
            for line in stat.traceback.format()[-6:]:
                print("   ", line)
        counts1 = Counter(type(o).__name__ for o in gc.get_objects())
        grown = {k: counts1[k] - counts0.get(k, 0) for k in counts1}
        top = sorted(grown.items(), key=lambda kv: -abs(kv[1]))[:15]
        print("--- object count change by type:", top)
    return {"samples": samples, "leaked_blocks": engine.leaked_blocks()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--kv-cache-tokens", type=int, default=0, help="0: the engine's default")
    p.add_argument("--sample-steps", type=int, default=500)
    p.add_argument("--warmup", type=float, default=0.3, help="fraction of requests")
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--no-serving", dest="serving", action="store_false", help="plain eager model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.tracemalloc:
        tracemalloc.start(8)
    result = run(args)
    print("leaked_blocks", result["leaked_blocks"])


if __name__ == "__main__":
    main()
