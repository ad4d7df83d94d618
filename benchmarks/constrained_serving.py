"""Constrained streams beside free ones, through `infer serve` and `infer bench`.

Starts `infer serve` (default flags unless --serve-args), then, after one
unreported warm-up run:
1. 32 free streams alone (`infer bench --concurrency 32`);
2. per round: the same 32 free streams while a second `infer bench` keeps 8
   `response_format: json_schema` streams running beside them, 32 alone, the
   32 beside 8 free streams of the same prompts (exactly --output-len tokens,
   ignore_eos: at least the work of the constrained ones), 32 alone;
3. time to first token of one stream at a time, the same prompts free and
   with the (by then cached) schema.
Prints every alone run's output tok/s, each mixed run's free tok/s and its ratio
to the alone runs either side of it, what the side streams did meanwhile (from
the engine's counters), and the TTFT p50 of 3.

    uv run python benchmarks/constrained_serving.py --out results/constrained
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import urllib.request
from pathlib import Path

from serving import BIN, served

SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["name", "age", "tags"],
        },
    },
}


def write_dataset(path: Path, count: int, constrained: bool) -> Path:
    lines = []
    for i in range(count):
        item: dict = {"prompt": f"Person {i}: describe someone you know as JSON."}
        if constrained:
            item["response_format"] = SCHEMA
        lines.append(json.dumps(item))
    path.write_text("\n".join(lines) + "\n")
    return path


def bench(url: str, out: Path, *args: str) -> subprocess.Popen:
    cmd = [BIN / "infer", "bench", "--url", url, "--json", str(out), *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL)


def engine_counts(url: str) -> tuple[int, int]:
    """Completed requests and generated tokens so far, from /v1/metrics."""
    with urllib.request.urlopen(url + "/v1/metrics", timeout=30) as response:
        engine = json.load(response)["engine"]
    return engine["completed_requests"], engine["total_tokens_generated"]


def level(path: Path) -> dict:
    return json.loads(path.read_text())["levels"][0]


def side_args(data: Path, output_len: int, constrained: bool) -> list[str]:
    """8 side streams: json_schema ones end where their grammar does (or at output_len);
    free ones run exactly output_len tokens (ignore_eos), the most work they can bring."""
    side = ["--dataset", str(data), "--concurrency", "8", "--requests", "1000"]
    side += ["--output-len", str(output_len)]
    return side + (["--no-ignore-eos"] if constrained else [])


def mixed_run(url: str, out: Path, name: str, free: list[str], side: list[str]) -> dict:
    """32 free streams while 8 side streams run; the free tok/s and what the side did."""
    beside = bench(url, out.with_name(f"{out.name}-{name}-side.json"), *side)
    before = engine_counts(url)
    rc = bench(url, out.with_name(f"{out.name}-{name}.json"), "--warmup", "8", *free).wait()
    after = engine_counts(url)
    if beside.poll() is not None:
        raise SystemExit(f"the {name} side streams ended early ({beside.returncode})")
    beside.terminate()
    beside.wait()
    if rc != 0:
        raise SystemExit(f"infer bench (32 free, {name}) failed")
    return {
        "tok_s": level(out.with_name(f"{out.name}-{name}.json"))["output_tokens_per_s"],
        "counts": [after[0] - before[0], after[1] - before[1]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve-args", default="", help="flags of `infer serve`")
    parser.add_argument("--out", default="constrained", help="output path prefix")
    parser.add_argument("--requests", type=int, default=96, help="free requests per run")
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the sequence below")
    parser.add_argument(
        "--warm-constrained",
        action="store_true",
        help="also send 16 json_schema requests (8 at a time) before the warm-up run",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    free = ["--concurrency", "32", "--requests", str(args.requests)]
    free += ["--output-len", str(args.output_len), "--input-len", "64"]
    sides = {
        "json_schema": side_args(
            write_dataset(out.with_suffix(".side-json.jsonl"), 64, True), args.output_len, True
        ),
        "free": side_args(
            write_dataset(out.with_suffix(".side-free.jsonl"), 64, False), args.output_len, False
        ),
    }
    ttft_free = write_dataset(out.with_suffix(".ttft-free.jsonl"), 12, False)
    ttft_json = write_dataset(out.with_suffix(".ttft-json.jsonl"), 12, True)
    one = ["--concurrency", "1", "--requests", "12"]
    one += ["--output-len", "8", "--no-ignore-eos"]
    alone: list[float] = []
    mixed: dict[str, list[dict]] = {name: [] for name in sides}
    with served(shlex.split(args.serve_args), out.with_suffix(".serve.log"), 600) as (url, _):

        def alone_run(i: int) -> float:
            path = out.with_name(f"{out.name}-alone{i}.json")
            if bench(url, path, *free).wait() != 0:
                raise SystemExit("infer bench (32 free) failed")
            return level(path)["output_tokens_per_s"]

        if args.warm_constrained:
            warm = ["--requests", "16", "--concurrency", "8", "--output-len", "64"]
            path = out.with_name(f"{out.name}-warm-json.json")
            data = out.with_suffix(".side-json.jsonl")
            if bench(url, path, "--dataset", str(data), *warm, "--no-ignore-eos").wait() != 0:
                raise SystemExit("infer bench (json_schema warm-up) failed")
        alone_run(-1)  # warms the engine up; not reported
        alone.append(alone_run(0))
        for r in range(args.rounds):
            for name, side in sides.items():
                mixed[name].append(mixed_run(url, out, f"{name}{r}", free, side))
                alone.append(alone_run(len(alone)))
        ttft = {}
        for name, data in (("free", ttft_free), ("json_schema", ttft_json)):
            path = out.with_name(f"{out.name}-ttft-{name}.json")
            if bench(url, path, "--dataset", str(data), *one).wait() != 0:
                raise SystemExit(f"infer bench (TTFT {name}) failed")
            ttft[name] = level(path)["ttft_ms"]["p50"]
    result: dict = {"free_alone_tok_s": alone}
    runs = [name for r in range(args.rounds) for name in sides]
    for i, name in enumerate(runs):  # each mixed run against the alone runs either side
        run = mixed[name][i // len(sides)]
        run["ratio"] = round(run["tok_s"] / ((alone[i] + alone[i + 1]) / 2), 3)
        free_requests = args.requests + 8
        side_requests = run["counts"][0] - free_requests
        side_tokens = run["counts"][1] - free_requests * args.output_len
        run["side_requests"] = side_requests
        run["side_tokens_per_request"] = round(side_tokens / max(side_requests, 1), 1)
    for name in sides:
        result[f"beside_8_{name}"] = mixed[name]
    result["ttft_p50_ms"] = ttft
    result["cached_schema_ttft_cost_ms"] = ttft["json_schema"] - ttft["free"]
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
