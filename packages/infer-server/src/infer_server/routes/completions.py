"""POST /v1/completions (the legacy text completion API)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import bad_request
from ..generation import Piece
from ..http import read_json
from ..state import gateway
from ..streaming import TextEvent
from ..validation import parse_completion, resolve_max_tokens
from .common import CompletionLogprobs, tokenize
from .run import Run, text_events


async def completions(request: Request) -> Response:
    gw = gateway(request)
    req = parse_completion(await read_json(request, gw.settings.max_body_bytes))
    model = gw.require_model(req.model)
    s = req.sampling
    prompts: list[list[int]] = []
    for prompt in req.prompts:
        if isinstance(prompt, str):
            ids = await tokenize(gw, model, prompt, model.prompt_bos(), "prompt", s.max_tokens)
        else:
            ids = prompt
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
    run = Run(
        request,
        gw,
        model,
        prefix="cmpl",
        served_as=req.model,
        prompts=prompts,
        sampling=s,
        max_tokens=limits,
    )
    echoes = [
        (p if isinstance(p, str) else model.decode(p)) if req.echo else ""
        for p in req.prompts
        for _ in range(s.n)
    ]
    builders = [CompletionLogprobs(model, len(e)) for e in echoes]

    if not s.stream:
        collected, stats = await run.collect()
        choices = [
            {
                "index": i,
                "text": echoes[i] + got.text,
                "logprobs": builders[i].build(got.logprobs) if s.logprobs else None,
                "finish_reason": got.finish_reason,
            }
            for i, got in enumerate(collected)
        ]
        return JSONResponse({**run.base, "object": "text_completion", "choices": choices, **stats})

    usage_field = {"usage": None} if s.include_usage else {}
    pending_echo = list(echoes)

    def chunk(choice: dict) -> dict:
        return {**run.base, "object": "text_completion", "choices": [choice], **usage_field}

    text_event = text_events(
        lambda index: chunk(
            {
                "index": index,
                "text": TextEvent.PLACEHOLDER,
                "logprobs": None,
                "finish_reason": None,
            }
        )
    )

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

    return await run.stream("text_completion", list, on_piece)
