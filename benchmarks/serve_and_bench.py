"""Start `infer serve`, run `infer bench` against it, stop it; optionally A/B two configs.

    uv run python benchmarks/serve_and_bench.py \
        --serve-args "--model smollm2" --baseline-serve-args "--model smollm2 --no-prefix-cache" \
        --out results/prefix -- --concurrency 1,4 --requests 16 --shared-prefix-len 512

Everything after `--` goes to `infer bench`. With a baseline, both runs use
the same bench flags on the same machine one after the other, and a ratio
table (candidate / baseline: above 1 is better for tok/s, below 1 is better
for latencies) is printed, as docs/benchmarks.md asks of every claim. Writes OUT.json / OUT.png per run and OUT-ratio.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from serving import BIN, served

METRICS = (
    ("out tok/s", "output_tokens_per_s", None),
    ("TTFT p50", "ttft_ms", "p50"),
    ("ITL p50", "itl_ms", "p50"),
    ("E2E p50", "e2e_ms", "p50"),
    ("E2E p99", "e2e_ms", "p99"),
)


def serve_and_bench(serve_args: str, bench_args: list[str], out: Path, ready_s: float) -> dict:
    """One run: the bench JSON of `infer bench` against a fresh `infer serve`."""
    log = out.with_suffix(".serve.log")
    with served(shlex.split(serve_args), log, ready_s) as (url, _):
        print(f"== infer serve {serve_args}", flush=True)
        files = ["--json", str(out.with_suffix(".json")), "--plot", str(out.with_suffix(".png"))]
        rc = subprocess.run([BIN / "infer", "bench", "--url", url, *bench_args, *files]).returncode
        if rc != 0:
            raise SystemExit(f"infer bench failed with exit status {rc}")
        return json.loads(out.with_suffix(".json").read_text())


def value(level: dict, field: str, key: str | None) -> float | None:
    v = level[field] if key is None else level[field][key]
    return None if v is None else float(v)


def ratios(candidate: dict, baseline: dict) -> list[dict]:
    """Per concurrency level: each metric's candidate, baseline and candidate/baseline."""
    rows = []
    for a, b in zip(candidate["levels"], baseline["levels"], strict=True):
        row = {"concurrency": a["concurrency"]}
        for name, field, key in METRICS:
            x, y = value(a, field, key), value(b, field, key)
            ratio = None if x is None or not y else round(x / y, 3)
            row[name] = {"candidate": x, "baseline": y, "ratio": ratio}
        rows.append(row)
    return rows


def ratio_table(rows: list[dict]) -> str:
    lines = ["conc  " + "  ".join(f"{name:>26}" for name, _, _ in METRICS)]
    for row in rows:
        cells = []
        for name, _, _ in METRICS:
            c = row[name]
            text = (
                "-"
                if c["ratio"] is None
                else (f"{c['candidate']:.1f} vs {c['baseline']:.1f} = {c['ratio']:.2f}x")
            )
            cells.append(f"{text:>26}")
        lines.append(f"{row['concurrency']:>4}  " + "  ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve-args", default="", help="flags of `infer serve` (candidate)")
    parser.add_argument("--baseline-serve-args", help="flags of `infer serve` for the baseline")
    parser.add_argument("--out", default="bench", help="output path prefix (default: bench)")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    args = parser.parse_args(argv[:split])
    bench_args = argv[split + 1 :]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    candidate = serve_and_bench(args.serve_args, bench_args, out, args.ready_timeout)
    if args.baseline_serve_args is None:
        return 0
    base_out = out.with_name(out.name + "-baseline")
    baseline = serve_and_bench(args.baseline_serve_args, bench_args, base_out, args.ready_timeout)
    rows = ratios(candidate, baseline)
    print(f"\ncandidate: {args.serve_args}\nbaseline:  {args.baseline_serve_args}")
    print(ratio_table(rows))
    out.with_name(out.name + "-ratio.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
