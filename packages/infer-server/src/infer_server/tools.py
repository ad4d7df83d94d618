"""`tools`, `tool_choice`, `parallel_tool_calls` and tool messages -> a checked ToolSpec.

Invariants: every tool is a function with a unique name and a parameters
schema that passes its meta-schema; a named `tool_choice` names one of
them; a `tool` message answers a call id an earlier assistant message made.
`required` and a named choice produce their call under a JSON schema (the
engine's grammar), so the output always parses and its arguments validate.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from infer_protocol import Constraint

from .errors import bad_request
from .structured import OutputConstraint, check_schema

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FUNCTION_FIELDS = frozenset({"name", "description", "parameters", "strict"})
ANY_OBJECT = {"type": "object"}
# `required` with parallel calls: at most this many per turn (a small model left
# unbounded repeats its call until max_tokens); identical calls are merged
MAX_PARALLEL_CALLS = 4


@dataclass(frozen=True)
class ToolSpec:
    """The request's tools (OpenAI shape) and how the model must use them."""

    tools: list[dict]
    choice: str  # "none" | "auto" | "required" | "named"
    named: str | None = None
    parallel: bool = True

    def parameters(self, name: str) -> dict:
        for tool in self.tools:
            if tool["function"]["name"] == name:
                return tool["function"].get("parameters") or ANY_OBJECT
        raise KeyError(name)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _tool(value: Any, i: int) -> dict:
    param = f"tools[{i}]"
    if not isinstance(value, dict) or value.get("type") != "function":
        raise bad_request(f'\'{param}\' must be {{"type": "function", "function": ...}}', param)
    extra = sorted(set(value) - {"type", "function"})
    if extra:
        raise bad_request(f"'{param}.{extra[0]}' is not a supported field", f"{param}.{extra[0]}")
    fn = value.get("function")
    if not isinstance(fn, dict):
        raise bad_request(f"'{param}.function' must be an object", f"{param}.function")
    extra = sorted(set(fn) - FUNCTION_FIELDS)
    if extra:
        name = f"{param}.function.{extra[0]}"
        raise bad_request(f"'{name}' is not a supported field", name)
    name = fn.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise bad_request(
            f"'{param}.function.name' must be 1-64 letters, digits, '_' or '-'",
            f"{param}.function.name",
        )
    if fn.get("description") is not None and not isinstance(fn["description"], str):
        name_ = f"{param}.function.description"
        raise bad_request(f"'{name_}' must be a string", name_)
    if fn.get("parameters") is not None:
        check_schema(fn["parameters"], f"{param}.function.parameters")
    return {"type": "function", "function": {k: v for k, v in fn.items() if v is not None}}


def parse_tools(body: dict) -> ToolSpec | None:
    """The request's ToolSpec, or None without `tools`; 400 naming the field when wrong."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls")
    if tools is None:
        for key in ("tool_choice", "parallel_tool_calls"):
            if body.get(key) is not None:
                raise bad_request(f"'{key}' is only allowed when 'tools' are given", key)
        return None
    if not isinstance(tools, list) or not tools:
        raise bad_request("'tools' must be a non-empty array of functions", "tools")
    parsed = [_tool(t, i) for i, t in enumerate(tools)]
    names = [t["function"]["name"] for t in parsed]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise bad_request(f"'tools' has two functions named {dup!r}", "tools")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_request("'parallel_tool_calls' must be a boolean", "parallel_tool_calls")
    named = None
    if choice is None:
        choice = "auto"
    elif isinstance(choice, dict):
        fn = choice.get("function")
        if choice.get("type") != "function" or not isinstance(fn, dict):
            raise bad_request(
                "'tool_choice' must be none, auto, required or "
                '{"type": "function", "function": {"name": ...}}',
                "tool_choice",
            )
        named = fn.get("name")
        if named not in names:
            raise bad_request(
                f"'tool_choice' names the function {named!r}, which is not in 'tools' "
                f"({', '.join(names)})",
                "tool_choice",
            )
        choice = "named"
    elif choice not in ("none", "auto", "required"):
        raise bad_request(
            f"'tool_choice' must be none, auto, required or a named function; got {choice!r}",
            "tool_choice",
        )
    return ToolSpec(parsed, choice, named, True if parallel is None else parallel)


def tool_constraint(spec: ToolSpec | None) -> OutputConstraint | None:
    """The grammar of a forced call: the named function's arguments, or for `required` a
    JSON array of {"name", "arguments"} objects (one item when calls are not parallel,
    else at most as many as there are tools, up to MAX_PARALLEL_CALLS)."""
    if spec is None or spec.choice not in ("required", "named"):
        return None
    if spec.choice == "named":
        schema = spec.parameters(spec.named or "")
        return OutputConstraint(Constraint("json_schema", json.dumps(schema)), "tools")
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"enum": [t["function"]["name"]]},
                "arguments": t["function"].get("parameters") or ANY_OBJECT,
            },
            "required": ["name", "arguments"],
        }
        for t in spec.tools
    ]
    most = min(len(spec.tools), MAX_PARALLEL_CALLS) if spec.parallel else 1
    schema = {"type": "array", "items": {"anyOf": calls}, "minItems": 1, "maxItems": most}
    return OutputConstraint(Constraint("json_schema", json.dumps(schema)), "tools")


def _tool_calls(value: Any, i: int, seen: set[str]) -> list[dict]:
    param = f"messages[{i}].tool_calls"
    if not isinstance(value, list):
        raise bad_request(f"'{param}' must be an array", param)
    calls = []
    for j, call in enumerate(value):
        where = f"{param}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(call.get("id"), str)
            or call.get("type", "function") != "function"
            or not isinstance(fn.get("name"), str)
            or not isinstance(fn.get("arguments"), str)
        ):
            raise bad_request(
                f'\'{where}\' must be {{"id", "type": "function", '
                '"function": {"name", "arguments": a JSON string}}',
                where,
            )
        try:
            json.loads(fn["arguments"])
        except ValueError:
            raise bad_request(
                f"'{where}.function.arguments' is not valid JSON", f"{where}.function.arguments"
            ) from None
        seen.add(call["id"])
        calls.append(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": fn["name"], "arguments": fn["arguments"]},
            }
        )
    return calls


def check_tool_messages(raw: list[Any], parsed: list[dict]) -> None:
    """Copy `tool_calls` and `tool_call_id` into the parsed messages, checking that every
    tool message answers a call an earlier assistant message made."""
    seen: set[str] = set()
    for i, (message, entry) in enumerate(zip(raw, parsed, strict=True)):
        if message.get("tool_calls") not in (None, []):
            if entry["role"] != "assistant":
                param = f"messages[{i}].tool_calls"
                raise bad_request(f"'{param}' is only allowed on assistant messages", param)
            entry["tool_calls"] = _tool_calls(message["tool_calls"], i, seen)
        if entry["role"] == "tool":
            param = f"messages[{i}].tool_call_id"
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise bad_request(f"'{param}' is a required string on tool messages", param)
            if call_id not in seen:
                raise bad_request(
                    f"'{param}' {call_id!r} answers no tool call of an earlier assistant message",
                    param,
                )
            entry["tool_call_id"] = call_id
        elif message.get("tool_call_id") is not None:
            param = f"messages[{i}].tool_call_id"
            raise bad_request(f"'{param}' is only allowed on tool messages", param)
