"""POST /v1/completions (the legacy text completion API)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import bad_request
from ..generation import Piece, merge, total_stats
from ..http import read_json
from ..metrics import RequestMetrics
from ..state import gateway
from ..streaming import TextEvent, start_stream
from ..validation import parse_completion, resolve_max_tokens
from .common import (
    CompletionLogprobs,
    make_choices,
    new_request_id,
    now,
    record_tokens,
    unless_disconnected,
)


async def completions(request: Request) -> Response:
    gw = gateway(request)
    req = parse_completion(await read_json(request, gw.settings.max_body_bytes))
    model = gw.require_model(req.model)
    s = req.sampling
    prompts: list[list[int]] = []
    for prompt in req.prompts:
        ids = model.encode_prompt(prompt) if isinstance(prompt, str) else prompt
        if not ids:
            raise bad_request("The prompt is empty", "prompt")
        if max(ids) >= model.vocab_size:
            raise bad_request(
                f"Token id {max(ids)} is out of the vocabulary ({model.vocab_size})", "prompt"
            )
        prompts.append(ids)
    limits = [
        resolve_max_tokens(
            s.max_tokens, len(ids), model.context_length, "prompt", s.max_tokens_limits
        )
        for ids in prompts
    ]
    rid = new_request_id("cmpl")
    metrics = RequestMetrics(gw.metrics)
    choices = make_choices(gw, model, rid, prompts, s, limits, metrics)
    echoes = [
        (p if isinstance(p, str) else model.decode(p)) if req.echo else ""
        for p in req.prompts
        for _ in range(s.n)
    ]
    builders = [CompletionLogprobs(model, len(e)) for e in echoes]
    base = {"id": rid, "created": now(), "model": req.model}

    def summary() -> dict:
        stats = total_stats(choices)
        record_tokens(request, stats["usage"])
        metrics.finish(stats["usage"]["prompt_tokens"], stats["usage"]["completion_tokens"])
        return stats

    if not s.stream:
        texts = list(echoes)
        reasons: list[str | None] = [None] * len(choices)
        entries: list[list] = [[] for _ in choices]

        async def collect() -> None:
            async for piece in merge(choices):
                texts[piece.index] += piece.text
                if piece.finish_reason:
                    reasons[piece.index] = piece.finish_reason
                entries[piece.index].extend(piece.logprobs or [])

        await unless_disconnected(request, collect())
        stats = summary()
        return JSONResponse(
            {
                **base,
                "object": "text_completion",
                "choices": [
                    {
                        "index": i,
                        "text": texts[i],
                        "logprobs": builders[i].build(entries[i]) if s.logprobs else None,
                        "finish_reason": reasons[i],
                    }
                    for i in range(len(choices))
                ],
                **stats,
            }
        )

    usage_field = {"usage": None} if s.include_usage else {}
    pending_echo = list(echoes)

    def chunk(choice: dict) -> dict:
        return {**base, "object": "text_completion", "choices": [choice], **usage_field}

    text_events: dict[int, TextEvent] = {}

    def text_event(index: int) -> TextEvent:
        """The common chunk (text only, no logprobs, not the last) of choice `index`."""
        if index not in text_events:
            choice = {
                "index": index,
                "text": TextEvent.PLACEHOLDER,
                "logprobs": None,
                "finish_reason": None,
            }
            text_events[index] = TextEvent(chunk(choice))
        return text_events[index]

    def on_piece(piece: Piece) -> list[dict | bytes]:
        text = pending_echo[piece.index] + piece.text
        pending_echo[piece.index] = ""
        if not text and piece.finish_reason is None and not piece.logprobs:
            return []
        if piece.finish_reason is None and not s.logprobs:
            return [text_event(piece.index).render(text)]
        lp = builders[piece.index].build(piece.logprobs or []) if s.logprobs else None
        return [
            chunk(
                {
                    "index": piece.index,
                    "text": text,
                    "logprobs": lp,
                    "finish_reason": piece.finish_reason,
                }
            )
        ]

    def closing() -> list[dict]:
        stats = summary()
        if not s.include_usage:
            return []
        return [{**base, "object": "text_completion", "choices": [], **stats}]

    return await start_stream(merge(choices), list, on_piece, closing, request.receive)
