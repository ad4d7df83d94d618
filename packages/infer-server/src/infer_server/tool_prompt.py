"""Messages with tools, tool calls and tool results -> what the chat template renders.

A template that mentions `tools` gets them as transformers passes them
(`tools=[{"type": "function", "function": {...}}]`, assistant `tool_calls`
with `arguments` as an object, `tool` messages as they are). A template
that does not (SmolLM2's, plain ChatML) would drop them silently, so they
are written into the messages in the Hermes format instead (the format the
`hermes` parser reads back): the tool signatures in the system message,
calls as `<tool_call>` JSON, results as `<tool_response>` in a user turn.
"""

from __future__ import annotations

import json
from typing import Any

HERMES_SYSTEM = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    "{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def template_knows_tools(source: str) -> bool:
    return "tools" in source or "tool_calls" in source


def _arguments(call: dict) -> Any:
    try:
        return json.loads(call["function"]["arguments"])
    except ValueError:  # checked on the way in; kept as text otherwise
        return call["function"]["arguments"]


def _native(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        m = dict(m)
        if "tool_calls" in m:
            m["tool_calls"] = [
                {**c, "function": {**c["function"], "arguments": _arguments(c)}}
                for c in m["tool_calls"]
            ]
        out.append(m)
    return out


def _hermes(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    out: list[dict] = []
    if tools:
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        system = HERMES_SYSTEM.format(tools=listing)
        if messages and messages[0]["role"] == "system":
            system = f"{messages[0]['content']}\n\n{system}"
            messages = messages[1:]
        out.append({"role": "system", "content": system})
    for m in messages:
        if m["role"] == "tool":
            text = f"<tool_response>\n{m['content']}\n</tool_response>"
            if out and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + text
            else:
                out.append({"role": "user", "content": text, "_tool_results": True})
            continue
        if m.get("tool_calls"):
            calls = [
                "<tool_call>\n"
                + json.dumps(
                    {"name": c["function"]["name"], "arguments": _arguments(c)},
                    ensure_ascii=False,
                )
                + "\n</tool_call>"
                for c in m["tool_calls"]
            ]
            content = "\n".join([m["content"], *calls] if m["content"] else calls)
            out.append({"role": "assistant", "content": content})
            continue
        out.append(dict(m))
    for m in out:
        m.pop("_tool_results", None)
    return out


def for_template(
    source: str, messages: list[dict], tools: list[dict] | None
) -> tuple[list[dict], list[dict] | None]:
    """(messages, tools) to render with the template whose text is `source`."""
    uses_tools = bool(tools) or any(m["role"] == "tool" or m.get("tool_calls") for m in messages)
    if not uses_tools:
        return messages, None
    if template_knows_tools(source):
        return _native(messages), tools
    return _hermes(messages, tools), None
