"""Offline batch generation, like vLLM's `LLM`.

    llm = LLM(model="smollm2", kv_cache_tokens=8192)
    outs = llm.generate(["Hello", [1, 2, 3]], SamplingParams(temperature=0, max_tokens=32))
    print(outs[0].outputs[0].text)

`generate` takes prompts as strings (tokenized without special tokens, plus
BOS when the model asks for it) or lists of token ids, and one
SamplingParams (offline_params.py: vLLM's keywords, or a protocol
SamplingParams) or one per prompt (default: greedy). The per-request limits
`max_tokens` (default 64), `ignore_eos` and `stop_token_ids` come from the
SamplingParams, as in vLLM, or from keyword arguments of `generate` (each a
value for all prompts or a list with one value per prompt); giving one both
ways with different values is a ValueError. Outputs come back in prompt
order, each with its `n` choices in `outputs` (the flat fields repeat
choice 0's). With a seed and n > 1, choice i samples with seed + i.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import attrs

from infer_protocol import Constraint, GenerateRequest, RequestTiming
from infer_protocol import SamplingParams as WireParams

from .engine import Engine, EngineError
from .loading import LoadOptions, load_for_serving
from .offline_params import SamplingParams
from .options import EngineOptions

GREEDY = SamplingParams(temperature=0.0)
DEFAULT_MAX_TOKENS = 64
Prompt = str | list[int]


@dataclass
class CompletionOutput:
    """One choice of a prompt (vLLM's name)."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = field(default=None, repr=False)


@dataclass
class RequestOutput:
    """One finished prompt: its `outputs` (n choices); the flat fields are choice 0's."""

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
    outputs: list[CompletionOutput] = field(default_factory=list, repr=False)


class LLM:
    """A model plus an engine core, driven in-process."""

    def __init__(
        self,
        model: str = "smollm2",
        device: str = "auto",
        dtype: str = "auto",
        gguf_weights: str = "auto",
        quantize: str | None = None,
        int8_max_batch: int | None = None,
        float32_min_batch: int = 64,
        int4_decode: str = "auto",
        **engine_options: Any,
    ) -> None:
        """Load `model` as `infer-scheduler` does with the flags of the same names
        (loading.py: `dtype="auto"` is bfloat16 with the CPU fast paths on a bf16-capable
        CPU; `dtype="float32"` is the exact path); other keywords are EngineOptions."""
        options = EngineOptions(**engine_options)
        load = LoadOptions(
            device=device,
            dtype=dtype,
            gguf_weights=gguf_weights,
            quantize=quantize,
            int8_max_batch=int8_max_batch,
            float32_min_batch=float32_min_batch,
            int4_decode=int4_decode,
        )
        self.bundle, self.fast_paths = load_for_serving(model, load)
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
        params: SamplingParams | WireParams | Sequence[SamplingParams | WireParams] | None = None,
        *,
        max_tokens: int | Sequence[int] | None = None,
        ignore_eos: bool | Sequence[bool] | None = None,
        stop_token_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
        constraint: Constraint | Sequence[Constraint | None] | None = None,
    ) -> list[RequestOutput]:
        """Run every prompt to completion, batched; outputs in prompt order.

        `constraint` (one for all prompts, or one per prompt) makes the engine
        keep each output inside a JSON schema, regex, choice or grammar.
        """
        if isinstance(prompts, str) or (
            isinstance(prompts, list) and prompts and isinstance(prompts[0], int)
        ):
            prompts = [prompts]
        prompts = list(prompts)
        n = len(prompts)
        per_params = [
            SamplingParams.wrap(p)
            for p in _per_prompt(params if params is not None else GREEDY, n, _PARAM_TYPES)
        ]
        per_max = _per_prompt(max_tokens, n, int) if max_tokens is not None else [None] * n
        per_ignore = _per_prompt(ignore_eos, n, bool) if ignore_eos is not None else [None] * n
        if constraint is None or isinstance(constraint, Constraint):
            per_constraint = [constraint] * n
        else:
            per_constraint = list(constraint)
            if len(per_constraint) != n:
                raise ValueError(f"constraint has {len(per_constraint)} items for {n} prompts")
        if stop_token_ids is None:
            per_stop: list[list[int] | None] = [None] * n
        elif all(isinstance(t, int) for t in stop_token_ids):
            per_stop = [list(stop_token_ids)] * n
        else:
            per_stop = [list(t) for t in stop_token_ids]
            if len(per_stop) != n:
                raise ValueError(f"stop_token_ids has {len(per_stop)} lists for {n} prompts")

        texts: list[str | None] = []
        groups: list[list[GenerateRequest]] = []
        for i, prompt in enumerate(prompts):
            ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
            texts.append(prompt if isinstance(prompt, str) else None)
            p = per_params[i]
            limit = _one("max_tokens", p.max_tokens, per_max[i], DEFAULT_MAX_TOKENS)
            stops = _one("stop_token_ids", p.stop_token_ids, per_stop[i], [])
            ignore = _one("ignore_eos", p.ignore_eos, per_ignore[i], False)
            groups.append(
                [
                    GenerateRequest(
                        request_id=f"offline-{next(self._ids)}",
                        input_ids=ids,
                        sampling=_choice_sampling(p.sampling, choice),
                        max_tokens=limit,
                        stop_token_ids=stops,
                        ignore_eos=ignore,
                        constraint=per_constraint[i],
                    )
                    for choice in range(p.n)
                ]
            )
        msgs = [msg for group in groups for msg in group]
        for i, msg in enumerate(msgs):
            try:
                self.engine.add_request(msg, enforce_capacity=False)
            except EngineError as exc:
                for earlier in msgs[:i]:
                    self.engine.abort(earlier.request_id)
                while self.engine.has_work:
                    self.engine.step()
                prompt_index = next(k for k, g in enumerate(groups) if msg in g)
                raise ValueError(f"prompt {prompt_index}: {exc.message}") from None
        return self._run(groups, texts)

    def _run(
        self, groups: list[list[GenerateRequest]], texts: list[str | None]
    ) -> list[RequestOutput]:
        ids = [m.request_id for group in groups for m in group]
        tokens: dict[str, list[int]] = {rid: [] for rid in ids}
        logprobs: dict[str, list[float]] = {rid: [] for rid in ids}
        tops: dict[str, list] = {rid: [] for rid in ids}
        finals: dict[str, Any] = {}
        while self.engine.has_work:
            for delta in self.engine.step():
                rid = delta.request_id
                tokens[rid].extend(delta.token_ids)
                logprobs[rid].extend(delta.logprobs or [])
                tops[rid].extend(delta.top_logprobs or [])
                if delta.finished:
                    finals[rid] = delta
        outputs = []
        for group, text in zip(groups, texts, strict=True):
            choices = [
                CompletionOutput(
                    index=k,
                    text=self.tokenizer.decode(tokens[m.request_id], skip_special_tokens=True),
                    token_ids=tokens[m.request_id],
                    finish_reason=finals[m.request_id].finish_reason or "abort",
                    logprobs=logprobs[m.request_id] or None,
                    top_logprobs=tops[m.request_id] or None,
                )
                for k, m in enumerate(group)
            ]
            last = finals[group[0].request_id]
            first = choices[0]
            outputs.append(
                RequestOutput(
                    request_id=group[0].request_id,
                    prompt=text,
                    prompt_token_ids=list(group[0].input_ids),
                    text=first.text,
                    token_ids=first.token_ids,
                    finish_reason=first.finish_reason,
                    prompt_tokens=last.usage.prompt_tokens if last.usage else 0,
                    cached_tokens=last.usage.cached_tokens if last.usage else 0,
                    timing=last.timing,
                    logprobs=first.logprobs,
                    top_logprobs=first.top_logprobs,
                    outputs=choices,
                )
            )
        return outputs


_PARAM_TYPES = (SamplingParams, WireParams)


def _one(name: str, from_params: Any, from_call: Any, default: Any) -> Any:
    """A per-request limit given in SamplingParams or to generate() (not both, differently)."""
    if from_params is not None and from_call is not None and from_params != from_call:
        raise ValueError(
            f"{name} given twice: {from_params!r} in SamplingParams, {from_call!r} to generate()"
        )
    if from_params is not None:
        return from_params
    return from_call if from_call is not None else default


def _choice_sampling(sampling: WireParams, choice: int) -> WireParams:
    """Choice i of a seeded request samples with seed + i (as the HTTP gateway does)."""
    if choice == 0 or sampling.seed is None:
        return sampling
    return attrs.evolve(sampling, seed=(sampling.seed + choice) % (2**63))


def _per_prompt(value: Any, n: int, kind: type | tuple[type, ...]) -> list[Any]:
    """One value for every prompt, or a sequence of exactly n values."""
    if isinstance(value, kind):
        return [value] * n
    values = list(value)
    if len(values) != n:
        name = kind.__name__ if isinstance(kind, type) else kind[0].__name__
        raise ValueError(f"got {len(values)} values of {name} for {n} prompts")
    return values
