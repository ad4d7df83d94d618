"""Constrained streams beside free ones, through `infer serve` and `infer bench`.

Starts `infer serve` (default flags unless --serve-args), then:
1. 32 free streams alone: `infer bench --concurrency 32` (after one unreported
   warm-up run);
2. the same 32 free streams while a second `infer bench` keeps 8 streams of
   `response_format: json_schema` requests running beside them, then 1 again;
3. time to first token of one stream at a time, the same prompts free and
   with the (by then cached) schema.
Prints the 32 free streams' output tok/s in 1 (before and after 2) and 2, their
ratio to the mean of the two alone runs, and the TTFT p50 of 3.

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve-args", default="", help="flags of `infer serve`")
    parser.add_argument("--out", default="constrained", help="output path prefix")
    parser.add_argument("--requests", type=int, default=96, help="free requests per run")
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument(
        "--side-free", action="store_true", help="the 8 side streams without the schema"
    )
    parser.add_argument(
        "--side-output-len",
        type=int,
        help="with --side-free: this many tokens per side answer, ignore_eos "
        "(the length a constrained answer ends at, to compare like with like)",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    free = ["--concurrency", "32", "--requests", str(args.requests)]
    free += ["--output-len", str(args.output_len), "--input-len", "64"]
    side_data = write_dataset(out.with_suffix(".side.jsonl"), 64, not args.side_free)
    side = ["--dataset", str(side_data), "--concurrency", "8"]
    if args.side_output_len:
        side += ["--requests", "1000", "--output-len", str(args.side_output_len)]
    else:
        side += ["--requests", "1000", "--output-len", str(args.output_len), "--no-ignore-eos"]
    ttft_free = write_dataset(out.with_suffix(".ttft-free.jsonl"), 12, False)
    ttft_json = write_dataset(out.with_suffix(".ttft-json.jsonl"), 12, True)
    one = ["--concurrency", "1", "--requests", "12"]
    one += ["--output-len", "8", "--no-ignore-eos"]
    with served(shlex.split(args.serve_args), out.with_suffix(".serve.log"), 600) as (url, _):
        alone = [out.with_name(f"{out.name}-alone{i}.json") for i in range(3)]
        for path in alone[:2]:  # the first run warms the engine up and is not reported
            if bench(url, path, *free).wait() != 0:
                raise SystemExit("infer bench (32 free) failed")
        mixed = out.with_name(out.name + "-mixed.json")
        beside = bench(url, out.with_name(out.name + "-side.json"), *side)
        counts = [engine_counts(url)]
        main_run = bench(url, mixed, "--warmup", "8", *free)
        rc = main_run.wait()
        counts.append(engine_counts(url))
        if beside.poll() is not None:
            raise SystemExit(f"the constrained streams ended early ({beside.returncode})")
        beside.terminate()
        beside.wait()
        if rc != 0:
            raise SystemExit("infer bench (32 free beside 8 constrained) failed")
        if bench(url, alone[2], *free).wait() != 0:  # alone again: the machine's drift
            raise SystemExit("infer bench (32 free) failed")
        ttft = {}
        for name, data in (("free", ttft_free), ("json_schema", ttft_json)):
            path = out.with_name(f"{out.name}-ttft-{name}.json")
            if bench(url, path, "--dataset", str(data), *one).wait() != 0:
                raise SystemExit(f"infer bench (TTFT {name}) failed")
            ttft[name] = level(path)["ttft_ms"]["p50"]
    before, after = (level(p)["output_tokens_per_s"] for p in alone[1:])
    mixed_tok_s = level(mixed)["output_tokens_per_s"]
    side_requests = counts[1][0] - counts[0][0] - args.requests - 8
    side_tokens = counts[1][1] - counts[0][1] - (args.requests + 8) * args.output_len
    result = {
        "side_requests_during_mixed_run": side_requests,
        "side_output_tokens_per_request": round(side_tokens / max(side_requests, 1), 1),
        "free_alone_tok_s": [before, after],
        "free_beside_constrained_tok_s": mixed_tok_s,
        "ratio": mixed_tok_s / ((before + after) / 2),
        "ttft_p50_ms": ttft,
        "cached_schema_ttft_cost_ms": ttft["json_schema"] - ttft["free"],
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
