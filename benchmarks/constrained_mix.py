"""Free streams beside constrained ones, in the engine (offline LLM, default model).

Runs three batches for TOKENS decode steps each (ignore_eos): 32 free rows;
32 free + 8 free rows; 32 free + 8 rows under a regex grammar. Prints the
free rows' tokens/s (decode only: the wall time of the batch minus the
first step). Then the per-request cost a cached JSON schema adds before the
first token (cache hit + matcher + first mask) and the per-row mask cost.

    OMP_WAIT_POLICY=PASSIVE uv run python benchmarks/constrained_mix.py [TOKENS]
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch

from infer_protocol import Constraint, SamplingParams
from infer_scheduler import LLM

TOKENS = int(sys.argv[1]) if len(sys.argv) > 1 else 32
SCHEMA = Constraint(
    "json_schema",
    json.dumps(
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "tags": {"type": "array"}},
            "required": ["name"],
        }
    ),
)
GRAMMAR = Constraint("regex", "[a-z ,.]+")


def run(llm: LLM, free: int, extra: int, constrained: bool) -> float:
    prompts = [f"Story number {i}: once upon a time" for i in range(free + extra)]
    constraint = [None] * free + [GRAMMAR if constrained else None] * extra
    params = SamplingParams(temperature=0.8, seed=1)
    start = time.perf_counter()
    outs = llm.generate(prompts, params, max_tokens=TOKENS, ignore_eos=True, constraint=constraint)
    wall = time.perf_counter() - start
    first = max(o.timing.queue_ms + o.timing.prefill_ms for o in outs[:free]) / 1000
    assert all(len(o.token_ids) == TOKENS for o in outs)
    return free * (TOKENS - 1) / (wall - first)


def main() -> None:
    torch.set_num_threads(1)  # the machine is shared: one thread, OMP_WAIT_POLICY=PASSIVE
    llm = LLM(model="smollm2", device="cpu", dtype="float32", kv_cache_tokens=16384, max_running=64)
    llm.generate(["warm up"] * 4, max_tokens=4, constraint=GRAMMAR)
    results = {}
    for label, extra, constrained in (
        ("32 free", 0, False),
        ("32 free + 8 free", 8, False),
        ("32 free + 8 constrained", 8, True),
    ):
        results[label] = run(llm, 32, extra, constrained)
        print(f"{label:26s} free rows {results[label]:7.1f} tok/s", flush=True)
    base = results["32 free"]
    for label in list(results)[1:]:
        print(f"{label}: {100 * (results[label] / base - 1):+.1f}% vs 32 free")
    grammars = llm.engine.grammars
    grammars.start(SCHEMA)
    hits = []
    for _ in range(50):
        t = time.perf_counter()
        grammars.start(SCHEMA)
        hits.append((time.perf_counter() - t) * 1000)
    print(
        f"cached schema, compile-cache hit + matcher + first mask: median {statistics.median(hits):.3f} ms"
    )
    from infer_scheduler.grammar import apply_masks

    class Row:
        def __init__(self, grammar):
            self.grammar = grammar

    rows = [Row(grammars.start(SCHEMA)) for _ in range(8)] + [Row(None) for _ in range(32)]
    logits = torch.randn(40, llm.bundle.config.vocab_size)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        apply_masks(logits, rows)
        times.append((time.perf_counter() - t) * 1000)
    print(f"mask 8 of 40 rows: median {statistics.median(times):.3f} ms per step")


if __name__ == "__main__":
    main()
