"""SamplingParams of the offline API, in vLLM's dialect.

`SamplingParams(temperature=0, max_tokens=32)` works as in vLLM. Accepted
keywords: the protocol's sampling fields (temperature, top_p, top_k, min_p,
presence_penalty, frequency_penalty, repetition_penalty, seed, logit_bias,
logprobs, top_logprobs) and vLLM's per-request ones (max_tokens,
stop_token_ids, ignore_eos, n). `logprobs` is vLLM's integer (the sampled
token's logprob plus that many alternatives; 0 for the sampled one only)
or infer's boolean (alternatives from `top_logprobs`). Defaults are infer's
(temperature 0.7, top_p 0.9, top_k 50), not vLLM's (1.0, 1.0, off).
Any other keyword is refused by name (TypeError); vLLM fields infer does
not implement say so. Invariant: an instance holds a valid protocol
SamplingParams (`sampling`), so every range is checked at construction.
"""

from __future__ import annotations

from typing import Any

import attrs

from infer_protocol import SamplingParams as WireParams

WIRE_FIELDS = tuple(f.name for f in attrs.fields(WireParams))
REQUEST_FIELDS = ("n", "max_tokens", "stop_token_ids", "ignore_eos")
NOT_IMPLEMENTED = {
    "stop": "stop strings are applied by the HTTP gateway; pass stop_token_ids",
    "best_of": "only n independent samples are drawn",
    "use_beam_search": "beam search is not implemented",
    "prompt_logprobs": "prompt logprobs are not computed",
    "min_tokens": "min_tokens is not implemented",
    "include_stop_str_in_output": "stop strings are not applied offline",
    "skip_special_tokens": "text is always decoded without special tokens",
    "spaces_between_special_tokens": "text is always decoded without special tokens",
    "truncate_prompt_tokens": "prompts are never truncated",
    "bad_words": "bad_words is not implemented; use logit_bias",
    "allowed_token_ids": "allowed_token_ids is not implemented; use logit_bias",
    "guided_decoding": "pass LLM.generate(constraint=Constraint(...)) instead",
    "structured_outputs": "pass LLM.generate(constraint=Constraint(...)) instead",
    "output_kind": "outputs are returned when every prompt has finished",
    "detokenize": "text is always decoded",
    "logits_processors": "logits processors are not supported",
}


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"SamplingParams: {name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"SamplingParams: {name} must be >= {low}, got {value}")
    return value


class SamplingParams:
    """How to sample, plus vLLM's per-request limits; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(WIRE_FIELDS) - set(REQUEST_FIELDS))
        for name in unknown:
            if name in NOT_IMPLEMENTED:
                raise TypeError(
                    f"SamplingParams: {name} is not supported ({NOT_IMPLEMENTED[name]})"
                )
        if unknown:
            accepted = ", ".join(sorted((*WIRE_FIELDS, *REQUEST_FIELDS)))
            raise TypeError(f"SamplingParams: unknown argument(s) {unknown}; accepted: {accepted}")
        self.n = _int("n", kwargs.pop("n", 1), 1)
        max_tokens = kwargs.pop("max_tokens", None)
        self.max_tokens = None if max_tokens is None else _int("max_tokens", max_tokens, 1)
        stops = kwargs.pop("stop_token_ids", None)
        self.stop_token_ids = (
            None if stops is None else [_int("stop_token_ids", t, 0) for t in stops]
        )
        ignore_eos = kwargs.pop("ignore_eos", None)
        if ignore_eos is not None and not isinstance(ignore_eos, bool):
            raise TypeError(f"SamplingParams: ignore_eos must be a boolean, got {ignore_eos!r}")
        self.ignore_eos = ignore_eos
        logprobs = kwargs.pop("logprobs", None)
        if logprobs is not None and not isinstance(logprobs, bool):  # vLLM's count
            top = kwargs.get("top_logprobs")
            if top is not None and top != logprobs:
                raise ValueError(
                    f"SamplingParams: logprobs={logprobs} (vLLM's count of alternatives) "
                    f"disagrees with top_logprobs={top}"
                )
            kwargs["top_logprobs"] = _int("logprobs", logprobs, 0)
            logprobs = True
        self.sampling = WireParams(**kwargs, logprobs=bool(logprobs))

    @classmethod
    def wrap(cls, params: SamplingParams | WireParams) -> SamplingParams:
        """An offline SamplingParams for either kind (a protocol one has no request fields)."""
        if isinstance(params, cls):
            return params
        if not isinstance(params, WireParams):
            raise TypeError(f"expected SamplingParams, got {type(params).__name__}")
        out = cls()
        out.sampling = params
        return out

    def __getattr__(self, name: str) -> Any:
        if name in WIRE_FIELDS or name == "greedy":
            return getattr(self.__dict__["sampling"], name)
        raise AttributeError(f"SamplingParams has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SamplingParams) and vars(self) == vars(other)

    def __repr__(self) -> str:
        extra = {name: getattr(self, name) for name in REQUEST_FIELDS}
        fields = ", ".join(f"{k}={v!r}" for k, v in extra.items() if v is not None)
        return f"SamplingParams({fields}, {self.sampling!r})"
