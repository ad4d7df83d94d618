"""Offline batch generation, like vLLM's `LLM`.

    llm = LLM(model="smollm2", kv_cache_tokens=8192)
    outs = llm.generate(["Hello", [1, 2, 3]], SamplingParams(temperature=0), max_tokens=32)

`generate` takes prompts as strings (tokenized without special tokens, plus
BOS when the model asks for it) or lists of token ids; one SamplingParams
or one per prompt (default: greedy); and, as keyword arguments, the
per-request limits the protocol keeps outside SamplingParams: `max_tokens`
(default 64), `ignore_eos`, `stop_token_ids` (each a value for all prompts
or a list with one value per prompt). Outputs come back in prompt order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from infer_protocol import GenerateRequest, RequestTiming, SamplingParams

from .engine import Engine, EngineError
from .options import EngineOptions

GREEDY = SamplingParams(temperature=0.0)
Prompt = str | list[int]


@dataclass
class RequestOutput:
    """One finished prompt."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    timing: RequestTiming | None
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = field(default=None, repr=False)


class LLM:
    """A model plus an engine core, driven in-process."""

    def __init__(
        self,
        model: str = "smollm2",
        device: str = "auto",
        dtype: str = "auto",
        **engine_options: Any,
    ) -> None:
        from infer_worker import load_model

        options = EngineOptions(**engine_options)
        self.bundle = load_model(model, device=device, dtype=dtype)
        self.engine = Engine(self.bundle, options)
        self.tokenizer = self.bundle.tokenizer
        self._ids = count()

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a text prompt (BOS added when the model wants it)."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids
        config = self.bundle.config
        if (
            config.add_bos_token
            and config.bos_token_id is not None
            and ids[:1] != [config.bos_token_id]
        ):
            ids = [config.bos_token_id, *ids]
        return ids

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        max_tokens: int | Sequence[int] = 64,
        ignore_eos: bool | Sequence[bool] = False,
        stop_token_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
    ) -> list[RequestOutput]:
        """Run every prompt to completion, batched; outputs in prompt order."""
        if isinstance(prompts, str) or (
            isinstance(prompts, list) and prompts and isinstance(prompts[0], int)
        ):
            prompts = [prompts]
        prompts = list(prompts)
        n = len(prompts)
        per_params = _per_prompt(params if params is not None else GREEDY, n, SamplingParams)
        per_max = _per_prompt(max_tokens, n, int)
        per_ignore = _per_prompt(ignore_eos, n, bool)
        if stop_token_ids is None or all(isinstance(t, int) for t in stop_token_ids):
            per_stop = [list(stop_token_ids or [])] * n
        else:
            per_stop = [list(t) for t in stop_token_ids]
            if len(per_stop) != n:
                raise ValueError(f"stop_token_ids has {len(per_stop)} lists for {n} prompts")

        texts: list[str | None] = []
        msgs: list[GenerateRequest] = []
        for i, prompt in enumerate(prompts):
            ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
            texts.append(prompt if isinstance(prompt, str) else None)
            msgs.append(
                GenerateRequest(
                    request_id=f"offline-{next(self._ids)}",
                    input_ids=ids,
                    sampling=per_params[i],
                    max_tokens=per_max[i],
                    stop_token_ids=per_stop[i],
                    ignore_eos=per_ignore[i],
                )
            )
        for i, msg in enumerate(msgs):
            try:
                self.engine.add_request(msg, enforce_capacity=False)
            except EngineError as exc:
                for earlier in msgs[:i]:
                    self.engine.abort(earlier.request_id)
                while self.engine.has_work:
                    self.engine.step()
                raise ValueError(f"prompt {i}: {exc.message}") from None
        return self._run(msgs, texts)

    def _run(self, msgs: list[GenerateRequest], texts: list[str | None]) -> list[RequestOutput]:
        tokens: dict[str, list[int]] = {m.request_id: [] for m in msgs}
        logprobs: dict[str, list[float]] = {m.request_id: [] for m in msgs}
        tops: dict[str, list] = {m.request_id: [] for m in msgs}
        done: dict[str, RequestOutput] = {}
        while self.engine.has_work:
            for delta in self.engine.step():
                rid = delta.request_id
                tokens[rid].extend(delta.token_ids)
                logprobs[rid].extend(delta.logprobs or [])
                tops[rid].extend(delta.top_logprobs or [])
                if delta.finished:
                    ids = tokens[rid]
                    done[rid] = RequestOutput(
                        request_id=rid,
                        prompt=None,
                        prompt_token_ids=[],
                        text=self.tokenizer.decode(ids, skip_special_tokens=True),
                        token_ids=ids,
                        finish_reason=delta.finish_reason or "abort",
                        prompt_tokens=delta.usage.prompt_tokens if delta.usage else 0,
                        cached_tokens=delta.usage.cached_tokens if delta.usage else 0,
                        timing=delta.timing,
                        logprobs=logprobs[rid] or None,
                        top_logprobs=tops[rid] or None,
                    )
        outputs = []
        for msg, text in zip(msgs, texts, strict=True):
            out = done[msg.request_id]
            out.prompt = text
            out.prompt_token_ids = list(msg.input_ids)
            outputs.append(out)
        return outputs


def _per_prompt(value: Any, n: int, kind: type) -> list[Any]:
    """One value for every prompt, or a sequence of exactly n values."""
    if isinstance(value, kind):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"got {len(values)} values of {kind.__name__} for {n} prompts")
    return values
