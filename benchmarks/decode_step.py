"""CPU time of one engine decode step of the default model, at batch 1 and 32.

    uv run python benchmarks/decode_step.py [--batches 1 32] [--steps 30] [--rounds 3]
    uv run python benchmarks/decode_step.py --dump-tokens out.json  # greedy tokens only

Loads the model as `infer-scheduler` does (dtype auto: bf16 with the CPU fast paths on a
bf16-capable CPU), adds `batch` requests of `--prompt-tokens` random token ids with
ignore_eos, steps the engine until every request has sampled its first token (the
prefill), then times `--steps` decode steps of `llm.engine.step()`. Each step is timed
by the process's CPU time (`time.process_time`) and by the wall clock; with one thread
(the default) CPU time does not count the time other processes of a shared machine hold
the core, so it is the figure to compare. Prints, per batch, the median (min) over the
rounds of each round's median step. Rounds interleave the batch sizes.

`--dump-tokens PATH` writes the greedy tokens of a few fixed prompts over 64 tokens as
JSON, to check that a change leaves the outputs identical. The script also runs at
older commits, whose `LLM` did not turn the fast paths on (it then does, as the engine
CLI of those commits did).
"""

from __future__ import annotations

import os

for _key, _value in (("OMP_WAIT_POLICY", "PASSIVE"), ("GOMP_SPINCOUNT", "10000")):
    os.environ.setdefault(_key, _value)

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from infer_protocol import GenerateRequest, SamplingParams  # noqa: E402
from infer_scheduler import LLM  # noqa: E402
from infer_worker.cpp_kernels import start_build  # noqa: E402

PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "Water boils at",
)


def load(model: str, kv_tokens: int) -> LLM:
    """The model and engine as `infer-scheduler --model M --device cpu` serves them."""
    if "int4_decode" in inspect.signature(LLM).parameters:
        llm = LLM(model, device="cpu", kv_cache_tokens=kv_tokens)
    else:  # older commits: the engine CLI chose the dtype and turned the fast paths on
        from infer_scheduler.engine import Engine
        from infer_worker.cpu_serving import (
            ALL_ROWS,
            int4_wanted,
            prepare_cpu_serving,
            serving_dtype,
        )

        dtype = serving_dtype("auto", torch.device("cpu"))
        llm = LLM(model, device="cpu", dtype=dtype, kv_cache_tokens=kv_tokens)
        bundle = llm.bundle
        llm.fast_paths = prepare_cpu_serving(
            bundle.model, bundle.dtype, ALL_ROWS, 64, int4_wanted("auto", bundle.linear_qtype)
        )
        llm.engine = Engine(bundle, llm.engine.options)
    start_build(wait=True)  # the C++ kernels, or the timed steps would use torch paths
    return llm


def decode_steps(llm: LLM, batch: int, prompt_tokens: int, steps: int, seed: int):
    """(cpu_s, wall_s) of each of `steps` decode steps of `batch` sequences."""
    rng = random.Random(seed)
    vocab = llm.bundle.config.vocab_size
    engine = llm.engine
    ids = [f"bench-{seed}-{i}" for i in range(batch)]
    for rid in ids:
        engine.add_request(
            GenerateRequest(
                request_id=rid,
                input_ids=[rng.randrange(100, vocab) for _ in range(prompt_tokens)],
                sampling=SamplingParams(temperature=0.0),
                max_tokens=steps + 8,
                ignore_eos=True,
            )
        )
    started: set[str] = set()
    while len(started) < batch:  # prefill: until every request sampled its first token
        started.update(d.request_id for d in engine.step())
    times = []
    for _ in range(steps):
        cpu, wall = time.process_time(), time.perf_counter()
        deltas = engine.step()
        times.append((time.process_time() - cpu, time.perf_counter() - wall))
        if len(deltas) != batch:
            raise RuntimeError(f"a decode step gave {len(deltas)} tokens, not {batch}")
    for rid in ids:
        engine.abort(rid)
    while engine.has_work:
        engine.step()
    return times


def dump_tokens(llm: LLM, path: str) -> None:
    outs = llm.generate(list(PROMPTS), max_tokens=64, ignore_eos=True)
    tokens = {p: o.token_ids for p, o in zip(PROMPTS, outs, strict=True)}
    with open(path, "w") as f:
        json.dump(tokens, f, indent=1)
    print(f"greedy tokens of {len(PROMPTS)} prompts over 64 tokens -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kv-cache-tokens", type=int, default=8192)
    parser.add_argument("--dump-tokens", metavar="PATH")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    llm = load(args.model, args.kv_cache_tokens)
    print(f"fast paths: {', '.join(llm.fast_paths) or 'none'}; threads {args.threads}")
    if args.dump_tokens:
        dump_tokens(llm, args.dump_tokens)
        return
    for batch in args.batches:  # warm-up: first-call costs out of the timed rounds
        decode_steps(llm, batch, args.prompt_tokens, 3, seed=-batch)
    cpu: dict[int, list[float]] = {b: [] for b in args.batches}
    wall: dict[int, list[float]] = {b: [] for b in args.batches}
    for r in range(args.rounds):
        for batch in args.batches:
            times = decode_steps(llm, batch, args.prompt_tokens, args.steps, seed=r * 1000 + batch)
            cpu[batch].append(statistics.median(t[0] for t in times) * 1e3)
            wall[batch].append(statistics.median(t[1] for t in times) * 1e3)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for batch in args.batches:
        c, w = cpu[batch], wall[batch]
        print(
            f"B={batch:<3} CPU ms/step median {statistics.median(c):.2f} (min {min(c):.2f})"
            f"  wall ms/step median {statistics.median(w):.2f} (min {min(w):.2f})"
            f"  rounds: {' '.join(f'{x:.2f}' for x in c)}"
        )


if __name__ == "__main__":
    main()
