"""What a choice releases: pieces of text with their logprobs, its final stats, and the
interleaving of several choices' pieces (`merge`: as they arrive, the first error wins)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import APIError


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass
class Piece:
    """Text released by one engine step of one choice."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    restart: bool = False  # drop what this choice released so far: it starts again elsewhere


@dataclass
class ChoiceStats:
    """`started`: the engine has produced a token for it (so its prompt was processed)."""

    started: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    queue_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    tokens_per_second: float = 0.0
    batch_size: int = 1


async def merge(choices: Sequence[Any]) -> AsyncIterator[Piece]:
    """Interleave the pieces of several choices as they arrive; first error wins."""
    if len(choices) == 1:
        async with contextlib.aclosing(choices[0].pieces()) as pieces:
            async for piece in pieces:
                yield piece
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(choice: Any) -> None:
        try:
            async for piece in choice.pieces():
                await queue.put(piece)
        except APIError as exc:
            await queue.put(exc)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(c)) for c in choices]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, APIError):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
