"""One benchmark run: find the model and tokenizer, build the requests, warm up, sweep.

Invariants: every level gets its own fresh prompts (only the shared prefix
repeats); `Outcome` is filled as the run goes, so an interrupted run still
holds the levels that finished.
"""

from __future__ import annotations

import argparse
import datetime
import random
import sys
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import httpx

from infer.bench import cache, prompts, tokens
from infer.bench.conversations import make_conversations, run_conversations
from infer.bench.load import Progress, run_level
from infer.bench.sse import error_message
from infer.bench.stats import LevelSummary, summarize


class BenchError(Exception):
    """A setup problem reported to the user as one line (exit status 2)."""


@attrs.define
class Outcome:
    """What a run found so far: `meta` once the model is known, then one summary per level."""

    meta: dict = attrs.Factory(dict)
    levels: list[LevelSummary] = attrs.Factory(list)


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
    except httpx.HTTPError as exc:
        raise BenchError(f"cannot list models at {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        why = error_message(response.status_code, response.content)
        raise BenchError(f"cannot list models at {url}: {why}")
    try:
        return str(response.json()["data"][0]["id"])
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


def check_turns(args: argparse.Namespace) -> int:
    """Conversations per level (0 without --turns); raises BenchError on flags that conflict."""
    if args.turns == 1:
        if args.conversations is not None:
            raise BenchError("--conversations needs --turns 2 or more")
        return 0
    if args.endpoint != "chat":
        raise BenchError("--turns needs --endpoint chat (a conversation is a list of messages)")
    if args.dataset:
        raise BenchError("--turns makes its own conversations; it cannot use --dataset")
    return args.conversations or -(-args.requests // args.turns)


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


async def bench(args: argparse.Namespace, outcome: Outcome) -> None:
    """Run the warmup and the sweep, filling `outcome`; raises BenchError on bad setup."""
    root = base_url(args.url)
    conversations = check_turns(args)
    for path in (args.json_path, args.plot_path):
        if path and not Path(path).resolve().parent.is_dir():
            raise BenchError(f"cannot write {path}: its directory does not exist")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    top = max(args.concurrency)
    limits = httpx.Limits(max_connections=top + 8, max_keepalive_connections=top + 8)
    timeout = httpx.Timeout(args.timeout, connect=min(args.timeout, 30.0))
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        model = args.model or await first_model(client, root, headers)
        counter = await _counter(args, client, root, model, headers)
        source = counter.source if counter is not None else tokens.CHUNKS
        if counter is None:
            print(f"infer bench: no tokenizer; counting {source}", file=sys.stderr)
        per_word = await _tokens_per_word(counter)
        singles = 0 if conversations else args.requests * len(args.concurrency)
        total = args.warmup + singles
        prefix = prompts.shared_prefix(args.shared_prefix_len, per_word, args.seed)
        bodies = _bodies(args, model, _items(args, total, per_word), prefix)
        config = {k: v for k, v in vars(args).items() if k != "api_key" and not callable(v)}
        outcome.meta.update(
            url=root,
            model=model,
            endpoint=args.endpoint,
            tokenizer=source,
            config=config,
            started_at=started,
        )
        if conversations:
            outcome.meta["conversations"] = {"per_level": conversations, "turns": args.turns}
        path = "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions"
        url = root + path
        if args.warmup:
            warm = Progress("warmup", args.warmup)
            await run_level(client, url, headers, bodies[: args.warmup], args.concurrency[0], warm)

        def body_for(messages: list[dict]) -> dict:
            return _bodies(args, model, [{"messages": messages}], "")[0]

        for n, concurrency in enumerate(args.concurrency):
            before = await cache.counters(client, root, headers)
            if conversations:
                convs = make_conversations(
                    conversations,
                    args.turns,
                    prompts.words_for_tokens(args.input_len, per_word),
                    prefix,
                    args.seed,
                    n,
                )
                progress = Progress(f"concurrency {concurrency}", conversations * args.turns)
                results, duration = await run_conversations(
                    client, url, headers, convs, body_for, concurrency, progress
                )
            else:
                start = args.warmup + n * args.requests
                progress = Progress(f"concurrency {concurrency}", args.requests)
                chunk = bodies[start : start + args.requests]
                results, duration = await run_level(
                    client, url, headers, chunk, concurrency, progress
                )
            hits = cache.delta(before, await cache.counters(client, root, headers))
            used = await tokens.count_outputs(counter, results)
            outcome.levels.append(summarize(concurrency, results, duration, used, hits))
