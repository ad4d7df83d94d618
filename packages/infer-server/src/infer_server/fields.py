"""Which request fields each endpoint honours; every other field is refused by name.

Invariant: a request field is either read by the parser (listed in
`CHAT_FIELDS` / `COMPLETION_FIELDS` / ...), accepted without effect
(`NO_EFFECT`, with the values that truly have no effect here), or refused
with a 400 whose `param` names it. Nothing is dropped silently.

A feature that starts honouring a field adds it to its endpoint's set here
(the one place); `NOT_SUPPORTED` then no longer applies to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import bad_request

SAMPLING_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "seed",
        "stop",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "logit_bias",
        "logprobs",
        "stream",
        "stream_options",
        "ignore_eos",
    }
)
CHAT_FIELDS = SAMPLING_FIELDS | {
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "add_generation_prompt",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
}
COMPLETION_FIELDS = SAMPLING_FIELDS | {
    "prompt",
    "echo",
    "best_of",
    "response_format",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
}
TOKENIZE_FIELDS = frozenset(
    {"model", "prompt", "messages", "add_generation_prompt", "add_special_tokens", "tools"}
)
DETOKENIZE_FIELDS = frozenset({"model", "tokens"})
MESSAGE_FIELDS = frozenset({"role", "content", "name"})
TOOL_MESSAGE_FIELDS = frozenset({"tool_calls", "tool_call_id"})  # honoured with "tools"


def _any(value: Any) -> bool:
    return True


# Accepted and without effect: OpenAI clients and SDK wrappers send these by
# default or as bookkeeping. A value outside the accepted ones asks for a
# behaviour the server lacks and is refused like any unsupported field.
NO_EFFECT: dict[str, tuple[Callable[[Any], bool], str]] = {
    "user": (_any, "any value (an end-user id for abuse tracking)"),
    "safety_identifier": (_any, "any value (OpenAI's successor of `user`)"),
    "metadata": (_any, "any value (tags for stored completions)"),
    "store": (lambda v: v in (None, False), "`false` (completions are never stored)"),
    "service_tier": (
        lambda v: v in (None, "auto", "default"),
        '`"auto"` or `"default"` (there is one tier)',
    ),
    "prompt_cache_key": (_any, "any value (prefix caching is automatic)"),
}

# Why a known OpenAI field is refused; any other unknown field gets a generic message.
NOT_SUPPORTED = {
    "functions": "function calling is not supported",
    "function_call": "function calling is not supported",
    "audio": "audio output is not supported",
    "modalities": "output modalities other than text are not supported",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "reasoning models are not supported",
    "verbosity": "verbosity control is not supported",
    "web_search_options": "web search is not supported",
    "suffix": "insertion (suffix) is not supported",
}


def refuse_unknown(body: dict, honoured: frozenset[str], where: str = "") -> None:
    """400 naming the first field of `body` that is neither honoured nor without effect.

    `where` prefixes the param for nested objects (e.g. "messages[2]."). A null
    value counts as absent.
    """
    for key, value in body.items():
        if key in honoured or value is None:
            continue
        accepts = NO_EFFECT.get(key) if not where else None
        if accepts is not None:
            check, allowed = accepts
            if check(value):
                continue
            raise bad_request(
                f"'{key}' = {value!r} is not supported; accepted: {allowed}", f"{where}{key}"
            )
        param = f"{where}{key}"
        reason = NOT_SUPPORTED.get(key)
        if reason is not None:
            raise bad_request(f"'{param}' is not supported: {reason}", param)
        raise bad_request(f"'{param}' is not a supported field", param)
