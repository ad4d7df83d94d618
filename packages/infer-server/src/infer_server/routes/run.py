"""One generation request from its engine requests to its single ending.

Invariant: every ending of a request (finished, streamed to the end,
abandoned by its client mid-stream or before the first token, failed by the
engine before or after the first token, timed out) passes through
`Run.finish`, which records usage in the access log and the Prometheus
counters exactly once, after the aborted choices have settled (so the counts
are what the engine generated).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from ..generation import Choice
from ..metrics import RequestMetrics
from ..model import ServedModel
from ..pieces import Piece, TokenLogprob, merge
from ..state import Gateway
from ..streaming import TextEvent, start_stream
from ..validation import Sampling
from .common import make_choices, new_request_id, now, record_tokens, unless_disconnected


@dataclass
class Collected:
    """One choice of a non-streamed answer."""

    text: str = ""
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)


def total_stats(choices: Sequence[Choice]) -> dict:
    """usage and performance over choices.

    A prompt counts once however many choices (n) it has, and only once the
    engine has processed it (a choice of it produced a token); its cached
    tokens count once too (the most any of its choices found in the cache),
    so cached_tokens <= prompt_tokens always.
    """
    groups: dict[int, list[Choice]] = {}
    for c in choices:
        groups.setdefault(id(c.input_ids), []).append(c)
    prompt = cached = 0
    for group in groups.values():
        started = [c for c in group if c.stats.started]
        if started:
            prompt += group[0].stats.prompt_tokens
            cached += min(group[0].stats.prompt_tokens, max(c.stats.cached_tokens for c in started))
    completion = sum(c.stats.completion_tokens for c in choices)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    performance = {
        "prefill_time_ms": round(max(c.stats.prefill_ms for c in choices), 3),
        "decode_time_ms": round(max(c.stats.decode_ms for c in choices), 3),
        "queue_time_ms": round(max(c.stats.queue_ms for c in choices), 3),
        "tokens_per_second": round(sum(c.stats.tokens_per_second for c in choices), 3),
        "batch_size": max(c.stats.batch_size for c in choices),
    }
    return {"usage": usage, "performance": performance}


def text_events(make: Callable[[int], dict]) -> Callable[[int], TextEvent]:
    """Per choice index, the cached TextEvent of the chunk `make(index)` (text only, not
    the last, with TextEvent.PLACEHOLDER as its text)."""
    cache: dict[int, TextEvent] = {}

    def get(index: int) -> TextEvent:
        if index not in cache:
            cache[index] = TextEvent(make(index))
        return cache[index]

    return get


class Run:
    """The choices of one chat or completions request and how it ends."""

    def __init__(
        self,
        request: Request,
        gw: Gateway,
        model: ServedModel,
        *,
        prefix: str,
        served_as: str,
        prompts: list[list[int]],
        sampling: Sampling,
        max_tokens: list[int],
    ) -> None:
        self.request = request
        self.sampling = sampling
        self.id = new_request_id(prefix)
        self.metrics = RequestMetrics(gw.metrics)
        self.choices = make_choices(
            gw, model, served_as, self.id, prompts, sampling, max_tokens, self.metrics
        )
        self.base = {"id": self.id, "created": now(), "model": served_as}
        self._finished: asyncio.Future[dict] | None = None

    async def finish(self) -> dict:
        """usage and performance; the first call (of any ending) records them."""
        if self._finished is None:
            self._finished = asyncio.ensure_future(self._record())
        return await asyncio.shield(self._finished)

    async def _record(self) -> dict:
        await asyncio.gather(*(c.settle() for c in self.choices), return_exceptions=True)
        stats = total_stats(self.choices)
        usage = stats["usage"]
        record_tokens(self.request, usage)
        self.metrics.finish(usage["prompt_tokens"], usage["completion_tokens"])
        return stats

    async def collect(self) -> tuple[list[Collected], dict]:
        """A non-streamed answer: each choice's text, finish reason and logprobs, and stats.

        A client that leaves ends it with 499 (its engine requests aborted).
        """
        out = [Collected() for _ in self.choices]
        for choice in self.choices:
            choice.restartable = True  # nothing reaches the client before the end

        async def work() -> None:
            async for piece in merge(self.choices):
                if piece.restart:
                    out[piece.index] = Collected()
                    continue
                got = out[piece.index]
                got.text += piece.text
                got.finish_reason = piece.finish_reason or got.finish_reason
                got.logprobs.extend(piece.logprobs or [])

        try:
            await unless_disconnected(self.request, work())
        finally:
            stats = await self.finish()
        return out, stats

    async def stream(
        self,
        obj: str,
        opening: Callable[[], Iterable[dict]],
        on_piece: Callable[[Piece], Iterable[dict | bytes]],
    ) -> Response:
        """An SSE answer of chunks of type `obj`; with include_usage, a last usage chunk."""

        async def closing() -> list[dict]:
            stats = await self.finish()
            if not self.sampling.include_usage:
                return []
            return [{**self.base, "object": obj, "choices": [], **stats}]

        try:
            return await start_stream(
                merge(self.choices), opening, on_piece, closing, self.finish, self.request.receive
            )
        except BaseException:
            await self.finish()
            raise
