"""Pieces shared by the generation routes: ids, choices, logprob JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from ..errors import APIError, bad_request
from ..generation import Choice
from ..metrics import RequestMetrics
from ..model import ServedModel
from ..pieces import TokenLogprob
from ..state import Gateway
from ..validation import Sampling, context_error

T = TypeVar("T")


def new_request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def make_choices(
    gw: Gateway,
    model: ServedModel,
    model_name: str,
    request_id: str,
    prompts: list[list[int]],
    sampling: Sampling,
    max_tokens: list[int],
    metrics: RequestMetrics,
) -> list[Choice]:
    """n choices per prompt; choice index = prompt index * n + j."""
    too_big = [t for t in sampling.logit_bias if t >= model.vocab_size]
    if too_big:
        raise bad_request(
            f"'logit_bias' token id {too_big[0]} is out of the vocabulary ({model.vocab_size})",
            "logit_bias",
        )
    choices = []
    for p, ids in enumerate(prompts):
        for j in range(sampling.n):
            index = p * sampling.n + j
            choices.append(
                Choice(
                    gw.pool,
                    model,
                    model_name=model_name,
                    request_id=f"{request_id}-{index}",
                    index=index,
                    input_ids=ids,
                    sampling=sampling,
                    max_tokens=max_tokens[p],
                    timeout=gw.settings.request_timeout,
                    metrics=metrics,
                )
            )
    return choices


async def tokenize(
    gw: Gateway, model: ServedModel, text: str, bos: int | None, what: str, max_tokens: int | None
) -> list[int]:
    """The ids of a prompt, tokenized off the event loop; a prompt that cannot fit the
    context is refused before (when a cheap lower bound shows it) or right after tokenizing."""
    context = model.context_length
    floor = model.min_tokens(text)
    if floor >= context:
        raise APIError(
            400,
            f"This model's maximum context length is {context} tokens. However, the {what} "
            f"are at least {floor} tokens long. Please reduce the length of the {what}.",
            param="messages" if what == "messages" else "prompt",
            code="context_length_exceeded",
        )
    count, ids_json = await gw.offload.ids_json(
        model.tokenizer, model.info.tokenizer_json, text, bos
    )
    if count >= context:
        raise context_error(context, count, max_tokens or 1, what)
    return json.loads(ids_json)


def record_tokens(request: Request, usage: dict) -> None:
    """Hand token counts to the access log."""
    request.state.prompt_tokens = usage["prompt_tokens"]
    request.state.completion_tokens = usage["completion_tokens"]


def chat_logprob(model: ServedModel, entry: TokenLogprob) -> dict:
    text = model.token_text(entry.token_id)
    return {
        "token": text,
        "logprob": entry.logprob,
        "bytes": list(text.encode("utf-8")),
        "top_logprobs": [
            {"token": (t := model.token_text(tid)), "logprob": lp, "bytes": list(t.encode("utf-8"))}
            for tid, lp in entry.top
        ],
    }


class CompletionLogprobs:
    """The legacy completions logprobs object, built token by token."""

    def __init__(self, model: ServedModel, offset: int = 0) -> None:
        self.model = model
        self.offset = offset

    def build(self, entries: list[TokenLogprob]) -> dict:
        out: dict = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for e in entries:
            text = self.model.token_text(e.token_id)
            out["tokens"].append(text)
            out["token_logprobs"].append(e.logprob)
            out["top_logprobs"].append({self.model.token_text(t): lp for t, lp in e.top})
            out["text_offset"].append(self.offset)
            self.offset += len(text)
        return out


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (which aborts its engine requests) if the client leaves."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        gone.cancel()
        raise
    gone.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise APIError(499, "The client closed the request", code="client_closed_request")


async def _disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
