"""`infer bench` flags and entry point.

Exit status: 0 when the sweep ran and at least one request succeeded, 1
when every request failed, 2 for bad flags, an unreachable server or a bad
dataset/tokenizer (with one clear message on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import random
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from infer.bench import prompts, tokens
from infer.bench.load import Progress, run_level
from infer.bench.plot import plot
from infer.bench.report import text_report, write_json
from infer.bench.stats import LevelSummary, summarize


class BenchError(Exception):
    """A setup problem reported to the user as one line (exit status 2)."""


def concurrency_list(text: str) -> list[int]:
    """Parse "1,8,32" into [1, 8, 32]; every level must be a positive integer."""
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,8,32, got {text!r}")
    return levels


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


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
    add("--requests", type=_positive, default=64, help="requests per level (default: 64)")
    add(
        "--input-len",
        type=_positive,
        default=128,
        metavar="TOKENS",
        help="synthetic prompt length (default: 128)",
    )
    add(
        "--output-len",
        type=_positive,
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
        "--shared-prefix-len",
        type=_non_negative,
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
        type=_non_negative,
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


def base_url(url: str) -> str:
    """The server root: `url` without a trailing slash or /v1; raises BenchError if not http(s)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BenchError(f"--url must be an http(s) URL like http://127.0.0.1:8000, got {url!r}")
    root = url.strip().rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


async def first_model(client: httpx.AsyncClient, root: str, headers: dict[str, str]) -> str:
    """The id of the first model in GET /v1/models; raises BenchError when there is none."""
    url = root + "/v1/models"
    try:
        response = await client.get(url, headers=headers)
        response.raise_for_status()
        return str(response.json()["data"][0]["id"])
    except httpx.HTTPError as exc:
        raise BenchError(f"cannot list models at {url}: {exc}") from exc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BenchError(f"{url} gave no model id; pass --model") from exc


async def _counter(args, client, root, model, headers):
    if args.tokenizer:
        try:
            return tokens.load_file_counter(args.tokenizer)
        except tokens.TokenizerError as exc:
            raise BenchError(str(exc)) from exc
    return await tokens.probe_server(client, root, model, headers)


async def _tokens_per_word(counter) -> float:
    if counter is None:
        return 1.0
    words = 200
    sample = prompts.synthetic_text(random.Random("calibrate"), words)
    try:
        return max((await counter.count([sample]))[0] / words, 0.1)
    except (tokens.TokenizerError, httpx.HTTPError, ValueError):
        return 1.0


def _items(args, count: int, tokens_per_word: float) -> list[dict]:
    if args.dataset:
        try:
            data = prompts.load_dataset(args.dataset)
        except prompts.DatasetError as exc:
            raise BenchError(str(exc)) from exc
        return [data[i % len(data)] for i in range(count)]
    return prompts.synthetic_items(count, args.input_len, tokens_per_word, args.seed)


def _bodies(args, model: str, items: list[dict], prefix: str) -> list[dict]:
    try:
        return [
            prompts.request_body(
                item,
                endpoint=args.endpoint,
                model=model,
                prefix=prefix,
                max_tokens=args.output_len,
                temperature=args.temperature,
                ignore_eos=args.ignore_eos,
            )
            for item in items
        ]
    except prompts.DatasetError as exc:
        raise BenchError(str(exc)) from exc


async def bench(args: argparse.Namespace) -> tuple[dict, list[LevelSummary]]:
    """Run the warmup and the sweep; returns (meta, one summary per level)."""
    root = base_url(args.url)
    for path in (args.json_path, args.plot_path):
        if path and not Path(path).resolve().parent.is_dir():
            raise BenchError(f"cannot write {path}: its directory does not exist")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    top = max(args.concurrency)
    limits = httpx.Limits(max_connections=top + 8, max_keepalive_connections=top + 8)
    timeout = httpx.Timeout(args.timeout, connect=min(args.timeout, 30.0))
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        model = args.model or await first_model(client, root, headers)
        counter = await _counter(args, client, root, model, headers)
        source = counter.source if counter is not None else tokens.CHUNKS
        if counter is None:
            print(f"infer bench: no tokenizer; counting {source}", file=sys.stderr)
        per_word = await _tokens_per_word(counter)
        total = args.warmup + args.requests * len(args.concurrency)
        prefix = prompts.shared_prefix(args.shared_prefix_len, per_word, args.seed)
        bodies = _bodies(args, model, _items(args, total, per_word), prefix)
        path = "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions"
        url = root + path
        if args.warmup:
            warm = Progress("warmup", args.warmup)
            await run_level(client, url, headers, bodies[: args.warmup], args.concurrency[0], warm)
        levels = []
        for n, concurrency in enumerate(args.concurrency):
            start = args.warmup + n * args.requests
            progress = Progress(f"concurrency {concurrency}", args.requests)
            chunk = bodies[start : start + args.requests]
            results, duration = await run_level(client, url, headers, chunk, concurrency, progress)
            used = await tokens.count_outputs(counter, results)
            levels.append(summarize(concurrency, results, duration, used))
    config = {k: v for k, v in vars(args).items() if k != "api_key" and not callable(v)}
    meta = {
        "url": root,
        "model": model,
        "endpoint": args.endpoint,
        "tokenizer": source,
        "config": config,
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return meta, levels


def run(args: argparse.Namespace) -> int:
    """Run `infer bench` with parsed `args`; prints the table, writes --json/--plot."""
    try:
        meta, levels = asyncio.run(bench(args))
    except BenchError as exc:
        print(f"infer bench: error: {exc}", file=sys.stderr)
        return 2
    print(text_report(meta, levels))
    try:
        if args.json_path:
            write_json(args.json_path, meta, levels)
        if args.plot_path:
            plot(args.plot_path, levels, f"infer bench: {meta['model']} at {meta['url']}")
    except OSError as exc:
        print(f"infer bench: error: cannot write results: {exc}", file=sys.stderr)
        return 2
    return 0 if any(s.completed for s in levels) else 1
