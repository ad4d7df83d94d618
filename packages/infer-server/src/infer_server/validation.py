"""Request bodies -> typed requests; anything wrong is a 400 naming the param.

A field the endpoint does not honour is refused by name (see `fields`); known
fields must have the documented type and range. Booleans never pass as numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import APIError, bad_request
from .fields import (
    CHAT_FIELDS,
    COMPLETION_FIELDS,
    MESSAGE_FIELDS,
    TOOL_MESSAGE_FIELDS,
    refuse_unknown,
)
from .structured import OutputConstraint, parse_output_constraint
from .tools import ToolSpec, check_tool_messages, parse_tools, tool_constraint

ROLES = ("system", "user", "assistant", "developer")  # "developer" is rendered as "system"
TOOL_ROLES = (*ROLES, "tool")
MAX_N = 8
MAX_CHOICES = 32  # prompts x n in one request: one request must not fill the engine's queue
MAX_TOP_LOGPROBS = 20
MAX_STOPS = 16
_MISSING = object()


@dataclass(frozen=True)
class Sampling:
    """Options shared by chat and completions (seed README defaults)."""

    max_tokens: int | None = None
    max_tokens_limits: tuple[int, ...] = ()  # an overridden max_tokens, still checked
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    stream: bool = False
    include_usage: bool = False
    ignore_eos: bool = False
    constraint: OutputConstraint | None = None  # response_format / guided_*


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, str]]
    add_generation_prompt: bool
    sampling: Sampling
    tools: ToolSpec | None = None


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompts: list[str | list[int]]
    echo: bool
    sampling: Sampling


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def get_str(body: dict, key: str, default: Any = _MISSING) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise bad_request(f"'{key}' is a required property", key)
        return default
    if not isinstance(value, str):
        raise bad_request(f"'{key}' must be a string, got {_type_name(value)}", key)
    return value


def get_bool(body: dict, key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"'{key}' must be a boolean, got {_type_name(value)}", key)
    return value


def get_int(
    body: dict, key: str, default: Any, low: int | None = None, high: int | None = None
) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{key}' must be an integer, got {_type_name(value)}", key)
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad_request(f"'{key}' must be in [{low}, {high}], got {value}", key)
    return value


def get_float(body: dict, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"'{key}' must be a number, got {_type_name(value)}", key)
    if not math.isfinite(value):
        raise bad_request(f"'{key}' must be a finite number, got {value}", key)
    if not low <= value <= high:
        raise bad_request(f"'{key}' must be in [{low:g}, {high:g}], got {value:g}", key)
    return float(value)


def _stops(body: dict) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise bad_request("'stop' must be a string or an array of strings", "stop")
    if len(items) > MAX_STOPS:
        raise bad_request(f"'stop' may hold at most {MAX_STOPS} strings", "stop")
    if any(s == "" for s in items):
        raise bad_request("'stop' strings must not be empty", "stop")
    return tuple(items)


def _logit_bias(body: dict) -> dict[int, float]:
    value = body.get("logit_bias")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("'logit_bias' must be an object of token id -> bias", "logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise bad_request(f"'logit_bias' key {key!r} is not a token id", "logit_bias") from None
        if token < 0:
            raise bad_request(f"'logit_bias' key {key!r} is not a token id", "logit_bias")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise bad_request("'logit_bias' values must be numbers in [-100, 100]", "logit_bias")
        out[token] = float(bias)
    return out


def parse_sampling(body: dict, *, chat: bool) -> Sampling:
    """The sampling options; `chat` selects how logprobs is spelled."""
    max_tokens = get_int(body, "max_tokens", None, 1)
    limits = () if max_tokens is None else (max_tokens,)
    if chat:
        max_tokens = get_int(body, "max_completion_tokens", max_tokens, 1)
        logprobs = get_bool(body, "logprobs", False)
        top = get_int(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
        if body.get("top_logprobs") is not None and not logprobs:
            raise bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    else:
        top = get_int(body, "logprobs", None, 0, MAX_TOP_LOGPROBS)
        logprobs = top is not None
        top = top or 0
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", "stream_options")
    stream = get_bool(body, "stream", False)
    if options is not None and not stream:
        raise bad_request("'stream_options' is only allowed with 'stream': true", "stream_options")
    if options:
        refuse_unknown(options, frozenset({"include_usage"}), "stream_options.")
    include_usage = get_bool(options or {}, "include_usage", False)
    return Sampling(
        max_tokens=max_tokens,
        max_tokens_limits=limits,
        temperature=get_float(body, "temperature", 0.7, 0.0, 2.0),
        top_p=get_float(body, "top_p", 0.9, 0.0, 1.0),
        top_k=get_int(body, "top_k", 50, -1),
        min_p=get_float(body, "min_p", 0.0, 0.0, 1.0),
        seed=get_int(body, "seed", None, -(2**63), 2**63 - 1),
        stop=_stops(body),
        n=get_int(body, "n", 1, 1, MAX_N),
        presence_penalty=get_float(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=get_float(body, "frequency_penalty", 0.0, -2.0, 2.0),
        repetition_penalty=get_float(body, "repetition_penalty", 1.0, 0.01, 10.0),
        logit_bias=_logit_bias(body),
        logprobs=logprobs,
        top_logprobs=top,
        stream=stream,
        include_usage=include_usage,
        ignore_eos=get_bool(body, "ignore_eos", False),
    )


def _content(message: dict, index: int) -> str:
    param = f"messages[{index}].content"
    content = message.get("content")
    if content is None:
        if message.get("role") == "assistant" or message.get("tool_calls"):
            return ""
        raise bad_request(f"'{param}' is a required property", param)
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"'{param}' must be a string or an array of text parts", param)
    texts = []
    for j, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or part.get("type") != "text"
            or not isinstance(part.get("text"), str)
        ):
            raise bad_request(
                f'\'{param}[{j}]\' must be a text part {{"type": "text", "text": ...}}',
                f"{param}[{j}]",
            )
        texts.append(part["text"])
    return "".join(texts)


def _message_fields(message: dict, index: int, honoured: frozenset[str]) -> None:
    """Refuse tool messages and tool calls unless `tools` is honoured; null values are absent."""
    where = f"messages[{index}]."
    if message.get("role") == "tool" and "tools" not in honoured:
        raise bad_request(
            f"'{where}role' 'tool' is not supported: tool calling is not supported",
            f"{where}role",
        )
    fields = MESSAGE_FIELDS | TOOL_MESSAGE_FIELDS if "tools" in honoured else MESSAGE_FIELDS
    refuse_unknown({k: v for k, v in message.items() if v != []}, fields, where)


def parse_messages(body: dict, honoured: frozenset[str] = CHAT_FIELDS) -> list[dict[str, str]]:
    messages = body.get("messages", _MISSING)
    if messages is _MISSING or messages is None:
        raise bad_request("'messages' is a required property", "messages")
    if not isinstance(messages, list):
        raise bad_request(f"'messages' must be an array, got {_type_name(messages)}", "messages")
    if not messages:
        raise bad_request("'messages' must not be empty", "messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"'messages[{i}]' must be an object", f"messages[{i}]")
        _message_fields(message, i, honoured)
        role = message.get("role")
        roles = TOOL_ROLES if "tools" in honoured else ROLES
        if not isinstance(role, str) or role not in roles:
            raise bad_request(
                f"'messages[{i}].role' must be one of {', '.join(roles)}; got {role!r}",
                f"messages[{i}].role",
            )
        if "name" in message and not isinstance(message["name"], str):
            raise bad_request(f"'messages[{i}].name' must be a string", f"messages[{i}].name")
        entry = {"role": "system" if role == "developer" else role, "content": _content(message, i)}
        if "name" in message:
            entry["name"] = message["name"]
        out.append(entry)
    if "tools" in honoured:
        check_tool_messages(messages, out)
    return out


def parse_chat(body: Any) -> ChatRequest:
    body = _object(body)
    refuse_unknown(body, CHAT_FIELDS)
    tools = parse_tools(body)
    constraint = parse_output_constraint(body, completions=False)
    forced = tool_constraint(tools)
    if forced is not None and constraint is not None:
        raise bad_request(
            f"'response_format' cannot be combined with tool_choice {tools.choice!r}",
            "response_format",
        )
    sampling = replace(parse_sampling(body, chat=True), constraint=forced or constraint)
    if sampling.logprobs and tools is not None and tools.choice != "none":
        raise bad_request("'logprobs' cannot be combined with tool calls", "logprobs")
    return ChatRequest(
        model=get_str(body, "model"),
        messages=parse_messages(body),
        add_generation_prompt=get_bool(body, "add_generation_prompt", True),
        sampling=sampling,
        tools=tools,
    )


def token_id(value: Any) -> int | None:
    """A non-negative integer (an integral JSON number counts), or None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and all(token_id(t) is not None for t in value)


def parse_prompts(value: Any) -> list[str | list[int]]:
    """A string, array of strings, array of token ids, or array of arrays of ids."""
    if value is None:
        raise bad_request("'prompt' is a required property", "prompt")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(p, str) for p in value):
            return list(value)
        if _is_ids(value):
            return [[token_id(t) for t in value]]
        if all(_is_ids(p) and p for p in value):
            return [[token_id(t) for t in p] for p in value]
    raise bad_request(
        "'prompt' must be a string, an array of strings, or (an array of) non-empty token id arrays",
        "prompt",
    )


def parse_completion(body: Any) -> CompletionRequest:
    body = _object(body)
    refuse_unknown(body, COMPLETION_FIELDS)
    sampling = replace(
        parse_sampling(body, chat=False),
        constraint=parse_output_constraint(body, completions=True),
    )
    best_of = get_int(body, "best_of", None, 1, MAX_N)
    if best_of is not None and best_of != sampling.n:
        raise bad_request("'best_of' must equal 'n' (best-of sampling is not supported)", "best_of")
    prompts = parse_prompts(body.get("prompt"))
    if len(prompts) * sampling.n > MAX_CHOICES:
        raise bad_request(
            f"{len(prompts)} prompts x n={sampling.n} asks for {len(prompts) * sampling.n} "
            f"completions; at most {MAX_CHOICES} per request",
            "prompt",
        )
    return CompletionRequest(
        model=get_str(body, "model"),
        prompts=prompts,
        echo=get_bool(body, "echo", False),
        sampling=sampling,
    )


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {_type_name(body)}")
    return body


def context_error(context: int, prompt: int, completion: int, what: str) -> APIError:
    """The stable context-overflow message (vLLM's wording)."""
    return APIError(
        400,
        f"This model's maximum context length is {context} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the {what}, {completion} in the completion). "
        f"Please reduce the length of the {what} or completion.",
        param="messages" if what == "messages" else "prompt",
        code="context_length_exceeded",
    )


def resolve_max_tokens(
    requested: int | None, prompt_len: int, context: int, what: str, also: tuple[int, ...] = ()
) -> int:
    """max_tokens to ask the engine for: the request's, or 512 but never past the context.

    `also` holds limits the request gave that another field overrode; each must fit too.
    """
    room = context - prompt_len
    for other in also:
        if other > room:
            raise context_error(context, prompt_len, other, what)
    if requested is None:
        if room < 1:
            raise context_error(context, prompt_len, 1, what)
        return min(512, room)
    if requested > room:
        raise context_error(context, prompt_len, requested, what)
    return requested
