"""Tool calls written in a model's own format, parsed out of its text (`tool_choice: auto`).

One parser per format: `hermes` (`<tool_call>{"name", "arguments"}</tool_call>`,
Qwen 2.5/3, Hermes, SmolLM2 through the Hermes prompt), `llama3_json`
(Llama 3.1+: `<|python_tag|>` or bare `{"name", "parameters"}` objects
separated by `;`), `mistral` (`[TOOL_CALLS] [{"name", "arguments"}, ...]`).
`parse` returns the text outside the calls and the calls as (name,
arguments JSON text); text that only looks like a call is left as content.
`marker` is the text that opens a call, so a stream can hold it back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PARSERS = ("hermes", "llama3_json", "mistral")


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # JSON text of an object


def _call(obj: Any, args_key: str = "arguments") -> ParsedCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get(args_key, obj.get("arguments", obj.get("parameters", {})))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return ParsedCall(obj["name"], json.dumps(args, ensure_ascii=False))


class HermesParser:
    marker = "<tool_call>"
    _block = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        calls: list[ParsedCall] = []
        kept: list[str] = []
        pos = 0
        for match in self._block.finditer(text):
            try:
                call = _call(json.loads(match.group(1)))
            except ValueError:
                call = None
            if call is None:
                continue
            kept.append(text[pos : match.start()])
            pos = match.end()
            calls.append(call)
        kept.append(text[pos:])
        return "".join(kept).strip() if calls else text, calls


class Llama3JsonParser:
    marker = "<|python_tag|>"

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        body = text.strip()
        if body.startswith(self.marker):
            body = body[len(self.marker) :].strip()
        if not body.startswith("{"):
            return text, []
        calls = []
        decoder = json.JSONDecoder()
        pos = 0
        while pos < len(body):
            try:
                obj, end = decoder.raw_decode(body, pos)
            except ValueError:
                return text, []
            call = _call(obj, "parameters")
            if call is None:
                return text, []
            calls.append(call)
            pos = end
            while pos < len(body) and body[pos] in " \n\t;":
                pos += 1
        return "", calls


class MistralParser:
    marker = "[TOOL_CALLS]"

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        head, sep, tail = text.partition(self.marker)
        if not sep:
            return text, []
        try:
            items, _ = json.JSONDecoder().raw_decode(tail.strip())
        except ValueError:
            return text, []
        items = items if isinstance(items, list) else [items]
        calls = [_call(item) for item in items]
        if not calls or any(c is None for c in calls):
            return text, []
        return head.strip(), [c for c in calls if c is not None]


ToolCallParser = HermesParser | Llama3JsonParser | MistralParser


def make_parser(name: str) -> ToolCallParser:
    if name == "hermes":
        return HermesParser()
    if name == "llama3_json":
        return Llama3JsonParser()
    if name == "mistral":
        return MistralParser()
    raise ValueError(f"unknown tool call parser {name!r}; one of {', '.join(PARSERS)}")


def parser_for_template(source: str) -> str:
    """The format a chat template teaches its model (hermes when it names none)."""
    if "[TOOL_CALLS]" in source:
        return "mistral"
    if "<|python_tag|>" in source or ("<|start_header_id|>" in source and "tools" in source):
        return "llama3_json"
    return "hermes"
