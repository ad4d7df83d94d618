"""POST /v1/chat/completions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import bad_request
from ..generation import Piece
from ..http import read_json
from ..state import gateway
from ..streaming import TextEvent
from ..templates import TemplateError
from ..validation import parse_chat, resolve_max_tokens
from .chat_tools import ToolStream, tool_message
from .common import chat_logprob, tokenize
from .run import Run, text_events


async def chat_completions(request: Request) -> Response:
    gw = gateway(request)
    req = parse_chat(await read_json(request, gw.settings.max_body_bytes))
    model = gw.require_model(req.model)
    s = req.sampling
    try:
        tools = req.tools.tools if req.tools else None
        text = await gw.offload.run(
            model.render_chat, req.messages, req.add_generation_prompt, tools
        )
    except TemplateError as exc:
        raise bad_request(str(exc), "messages") from None
    ids = await tokenize(gw, model, text, None, "messages", s.max_tokens)
    if not ids:
        raise bad_request("The rendered prompt is empty", "messages")
    max_tokens = resolve_max_tokens(
        s.max_tokens, len(ids), model.context_length, "messages", s.max_tokens_limits
    )
    run = Run(
        request,
        gw,
        model,
        prefix="chatcmpl",
        served_as=req.model,
        prompts=[ids],
        sampling=s,
        max_tokens=[max_tokens],
    )

    calling = req.tools is not None and req.tools.choice != "none"
    if calling and not s.stream:
        collected, stats = await run.collect()
        choices = []
        for i, got in enumerate(collected):
            message, reason = tool_message(model, req.tools, got.text, got.finish_reason)
            choices.append(
                {"index": i, "message": message, "logprobs": None, "finish_reason": reason}
            )
        return JSONResponse({**run.base, "object": "chat.completion", "choices": choices, **stats})

    if not s.stream:
        collected, stats = await run.collect()
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": got.text},
                "logprobs": (
                    {"content": [chat_logprob(model, e) for e in got.logprobs]}
                    if s.logprobs
                    else None
                ),
                "finish_reason": got.finish_reason,
            }
            for i, got in enumerate(collected)
        ]
        return JSONResponse({**run.base, "object": "chat.completion", "choices": choices, **stats})

    usage_field = {"usage": None} if s.include_usage else {}

    def chunk(choice: dict) -> dict:
        return {**run.base, "object": "chat.completion.chunk", "choices": [choice], **usage_field}

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
            for c in run.choices
        ]

    text_event = text_events(
        lambda index: chunk(
            {
                "index": index,
                "delta": {"content": TextEvent.PLACEHOLDER},
                "logprobs": None,
                "finish_reason": None,
            }
        )
    )

    streams: dict[int, ToolStream] = {}

    def on_tool_piece(piece: Piece) -> list[dict | bytes]:
        stream = streams.setdefault(piece.index, ToolStream(model, req.tools))
        return [
            chunk({"index": piece.index, "delta": delta, "logprobs": None, "finish_reason": reason})
            for delta, reason in stream.push(piece.text, piece.finish_reason)
        ]

    def on_piece(piece: Piece) -> list[dict | bytes]:
        if calling:
            return on_tool_piece(piece)
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

    return await run.stream("chat.completion.chunk", opening, on_piece)
