"""POST /v1/chat/completions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import bad_request
from ..generation import Piece, merge, total_stats
from ..http import read_json
from ..metrics import RequestMetrics
from ..state import gateway
from ..streaming import TextEvent, start_stream
from ..templates import TemplateError
from ..validation import parse_chat, resolve_max_tokens
from .common import (
    chat_logprob,
    make_choices,
    new_request_id,
    now,
    record_tokens,
    unless_disconnected,
)


async def chat_completions(request: Request) -> Response:
    gw = gateway(request)
    req = parse_chat(await read_json(request, gw.settings.max_body_bytes))
    model = gw.require_model(req.model)
    try:
        ids = model.encode_chat(req.messages, req.add_generation_prompt)
    except TemplateError as exc:
        raise bad_request(str(exc), "messages") from None
    if not ids:
        raise bad_request("The rendered prompt is empty", "messages")
    s = req.sampling
    max_tokens = resolve_max_tokens(
        s.max_tokens, len(ids), model.context_length, "messages", s.max_tokens_limits
    )
    rid = new_request_id("chatcmpl")
    metrics = RequestMetrics(gw.metrics)
    choices = make_choices(gw, model, rid, [ids], s, [max_tokens], metrics)
    created = now()
    base = {"id": rid, "created": created, "model": req.model}

    def summary() -> dict:
        stats = total_stats(choices)
        record_tokens(request, stats["usage"])
        metrics.finish(stats["usage"]["prompt_tokens"], stats["usage"]["completion_tokens"])
        return stats

    if not s.stream:
        texts = [""] * len(choices)
        reasons: list[str | None] = [None] * len(choices)
        logprobs: list[list] = [[] for _ in choices]

        async def collect() -> None:
            async for piece in merge(choices):
                texts[piece.index] += piece.text
                if piece.finish_reason:
                    reasons[piece.index] = piece.finish_reason
                if piece.logprobs:
                    logprobs[piece.index].extend(chat_logprob(model, e) for e in piece.logprobs)

        await unless_disconnected(request, collect())
        stats = summary()
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": texts[i]},
                        "logprobs": {"content": logprobs[i]} if s.logprobs else None,
                        "finish_reason": reasons[i],
                    }
                    for i in range(len(choices))
                ],
                **stats,
            }
        )

    usage_field = {"usage": None} if s.include_usage else {}

    def chunk(choice: dict) -> dict:
        return {**base, "object": "chat.completion.chunk", "choices": [choice], **usage_field}

    def opening() -> list[dict]:
        return [
            chunk(
                {
                    "index": c.index,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            )
            for c in choices
        ]

    text_events: dict[int, TextEvent] = {}

    def text_event(index: int) -> TextEvent:
        """The common chunk (text only, no logprobs, not the last) of choice `index`."""
        if index not in text_events:
            delta = {"content": TextEvent.PLACEHOLDER}
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
            text_events[index] = TextEvent(chunk(choice))
        return text_events[index]

    def on_piece(piece: Piece) -> list[dict | bytes]:
        if not piece.text and piece.finish_reason is None and not piece.logprobs:
            return []
        if piece.finish_reason is None and not piece.logprobs:
            return [text_event(piece.index).render(piece.text)]
        lp = (
            {"content": [chat_logprob(model, e) for e in piece.logprobs]}
            if piece.logprobs
            else None
        )
        delta = {"content": piece.text} if piece.text or piece.finish_reason is None else {}
        return [
            chunk(
                {
                    "index": piece.index,
                    "delta": delta,
                    "logprobs": lp,
                    "finish_reason": piece.finish_reason,
                }
            )
        ]

    def closing() -> list[dict]:
        stats = summary()
        if not s.include_usage:
            return []
        return [{**base, "object": "chat.completion.chunk", "choices": [], **stats}]

    return await start_stream(merge(choices), opening, on_piece, closing, request.receive)
