"""`infer bench` flags and entry point.

Exit status: 0 when the sweep ran and at least one request succeeded, 1
when every request failed, 2 for bad flags, an unreachable server or a bad
dataset/tokenizer (with one clear message on stderr), 130 on Ctrl-C (the
levels that finished are still reported). Importing this module is cheap:
the heavy modules load in `run`.
"""

from __future__ import annotations

import argparse
import sys

from infer_protocol.defaults import non_negative_int, positive_int


def concurrency_list(text: str) -> list[int]:
    """Parse "1,8,32" into [1, 8, 32]; every level must be a positive integer."""
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,8,32, got {text!r}")
    return levels


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `infer bench` flags to `parser`."""
    add = parser.add_argument
    add("--url", default="http://127.0.0.1:8000", help="server base URL, with or without /v1")
    add("--model", help="model name (default: the first of GET /v1/models)")
    add("--endpoint", choices=("chat", "completions"), default="chat", help="(default: chat)")
    add(
        "--concurrency",
        type=concurrency_list,
        default=[1, 8, 32],
        metavar="N[,N...]",
        help="concurrency levels, run in turn (default: 1,8,32)",
    )
    add("--requests", type=positive_int, default=64, help="requests per level (default: 64)")
    add(
        "--input-len",
        type=positive_int,
        default=128,
        metavar="TOKENS",
        help="synthetic prompt length (default: 128)",
    )
    add(
        "--output-len",
        type=positive_int,
        default=128,
        metavar="TOKENS",
        help="max_tokens of every request (default: 128)",
    )
    add(
        "--dataset",
        metavar="FILE",
        help='JSONL prompts instead of synthetic ones: {"prompt": str} or {"messages": [...]}',
    )
    add(
        "--turns",
        type=positive_int,
        default=1,
        metavar="K",
        help="multi-turn conversations of K turns (chat): each turn resends the whole history "
        "with the model's answers; conversations interleave over the streams (default: 1, "
        "single requests)",
    )
    add(
        "--conversations",
        type=positive_int,
        metavar="N",
        help="conversations per level with --turns (default: --requests / --turns, rounded up); "
        "a level then sends N x K requests",
    )
    add(
        "--shared-prefix-len",
        type=non_negative_int,
        default=0,
        metavar="TOKENS",
        help="common system prompt put before every request (default: 0)",
    )
    add("--api-key", help="sent as 'Authorization: Bearer KEY'")
    add("--temperature", type=_non_negative_float, default=0.0, help="(default: 0)")
    add(
        "--no-ignore-eos",
        dest="ignore_eos",
        action="store_false",
        help='do not send "ignore_eos": true (for servers that reject it)',
    )
    add(
        "--warmup",
        type=non_negative_int,
        default=1,
        metavar="N",
        help="requests sent first and not measured (default: 1)",
    )
    add(
        "--tokenizer",
        metavar="tokenizer.json",
        help="count output tokens with this file (default: the server's POST /tokenize, "
        "else stream chunks)",
    )
    add(
        "--timeout",
        type=_positive_float,
        default=600.0,
        metavar="SECONDS",
        help="per request (default: 600)",
    )
    add("--seed", type=int, default=0, help="seed of the synthetic prompts (default: 0)")
    add("--json", dest="json_path", metavar="FILE", help="write the results as JSON")
    add("--plot", dest="plot_path", metavar="FILE.png", help="write a PNG plot")


def run(args: argparse.Namespace) -> int:
    """Run `infer bench` with parsed `args`; prints the table, writes --json/--plot.

    Ctrl-C stops the sweep; the levels that finished are still reported (exit 130).
    """
    # imported here so that building the parser (`infer --help`) stays fast
    import asyncio

    from infer.bench.plot import plot
    from infer.bench.report import text_report, write_json
    from infer.bench.sweep import BenchError, Outcome, bench

    outcome = Outcome()
    interrupted = False
    try:
        asyncio.run(bench(args, outcome))
    except BenchError as exc:
        print(f"infer bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninfer bench: interrupted", file=sys.stderr)
        interrupted = True
    if not outcome.levels:
        return 130 if interrupted else 1
    meta, levels = outcome.meta, outcome.levels
    print(text_report(meta, levels))
    try:
        if args.json_path:
            write_json(args.json_path, meta, levels)
        if args.plot_path:
            plot(args.plot_path, levels, f"infer bench: {meta['model']} at {meta['url']}")
    except OSError as exc:
        print(f"infer bench: error: cannot write results: {exc}", file=sys.stderr)
        return 2
    if interrupted:
        return 130
    return 0 if any(s.completed for s in levels) else 1
