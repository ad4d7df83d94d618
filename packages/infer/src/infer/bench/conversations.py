"""Multi-turn conversations: every turn resends the whole history with the model's answers.

Invariants: the turns of one conversation run one after another (turn t+1
carries the answer streamed for turn t, so consecutive turns share a
growing prefix); conversations are interleaved: a stream that finishes a
turn puts its conversation at the back of the queue and takes the one at
the front, so between two turns of a conversation the other conversations
each send one. A failed turn ends its conversation: its remaining turns
count as failed without being sent. Every conversation gets its own
opening words, so conversations share no prefix beyond `prefix`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import attrs
import httpx

from infer.bench.load import Progress
from infer.bench.prompts import synthetic_text
from infer.bench.sse import RequestResult, stream_request

NOT_SENT = "not sent: an earlier turn of its conversation failed"


@attrs.define
class Conversation:
    """The history sent so far and the user messages still to send."""

    messages: list[dict]
    pending: list[str]


def make_conversations(
    count: int, turns: int, words: int, prefix: str, seed: int, level: int
) -> list[Conversation]:
    """`count` conversations of `turns` user messages of about `words` words each."""
    out = []
    for i in range(count):
        rng = random.Random(f"conversation-{seed}-{level}-{i}")
        pending = [
            f"Conversation {level}.{i}, turn {t + 1}: " + synthetic_text(rng, words)
            for t in range(turns)
        ]
        system = [{"role": "system", "content": prefix}] if prefix else []
        out.append(Conversation(messages=system, pending=pending))
    return out


async def run_conversations(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    conversations: list[Conversation],
    body_for: Callable[[list[dict]], dict],
    concurrency: int,
    progress: Progress | None = None,
) -> tuple[list[RequestResult], float]:
    """Run every turn over `concurrency` streams; results in finishing order, wall seconds."""
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    for index in range(len(conversations)):
        queue.put_nowait(index)
    streams = max(1, min(concurrency, len(conversations)))
    results: list[RequestResult] = []
    open_count = len(conversations)

    def record(result: RequestResult) -> None:
        results.append(result)
        if progress is not None:
            progress.update(result.ok)

    async def stream() -> None:
        nonlocal open_count
        while (index := await queue.get()) is not None:
            conv = conversations[index]
            conv.messages.append({"role": "user", "content": conv.pending.pop(0)})
            result = await stream_request(client, url, body_for(list(conv.messages)), headers)
            record(result)
            if result.ok and conv.pending:
                conv.messages.append({"role": "assistant", "content": result.text})
                queue.put_nowait(index)
                continue
            for _ in conv.pending:
                record(RequestResult(ok=False, error=NOT_SENT))
            conv.pending.clear()
            open_count -= 1
            if open_count == 0:
                for _ in range(streams):
                    queue.put_nowait(None)

    start = time.perf_counter()
    if conversations:
        await asyncio.gather(*(stream() for _ in range(streams)))
    duration = time.perf_counter() - start
    if progress is not None:
        progress.close()
    return results, duration
