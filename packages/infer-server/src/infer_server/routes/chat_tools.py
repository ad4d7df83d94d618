"""A chat answer's text -> `tool_calls` (whole, or as OpenAI's streamed deltas).

`auto`: the model's own format, read by the served model's parser; text
before a call is content. `required`: a JSON array of {"name",
"arguments"} (written under a grammar). A named function: the text is its
arguments (grammar too). Calls to a function not in `tools` leave the text
as content. finish_reason is "tool_calls" when calls were made and the
engine ended the output itself; "length" keeps the text as content.
"""

from __future__ import annotations

import json

from ..model import ServedModel
from ..tool_parsers import Llama3JsonParser, ParsedCall
from ..tools import ToolSpec, new_call_id


def parse_calls(model: ServedModel, spec: ToolSpec, text: str) -> tuple[str, list[ParsedCall]]:
    """(content, calls) of a finished output."""
    if spec.choice == "named":
        return "", [ParsedCall(spec.named or "", text)]
    if spec.choice == "required":
        try:
            items = json.loads(text)
            calls = [ParsedCall(c["name"], json.dumps(c["arguments"])) for c in items]
            calls = list(dict.fromkeys(calls))  # a repeated identical call is one call
        except (ValueError, KeyError, TypeError):
            return text, []
    else:
        text_out, calls = model.tool_parser.parse(text)
        if not calls:
            return text, []
        text = text_out
    names = {t["function"]["name"] for t in spec.tools}
    if any(c.name not in names for c in calls):
        return text, []
    if not spec.parallel:
        calls = calls[:1]
    return ("" if spec.choice == "required" else text), calls


def call_objects(calls: list[ParsedCall]) -> list[dict]:
    return [
        {
            "id": new_call_id(),
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for c in calls
    ]


def tool_message(
    model: ServedModel, spec: ToolSpec, text: str, reason: str | None
) -> tuple[dict, str | None]:
    """The assistant message and finish_reason of a non-streamed choice."""
    if reason != "stop":
        return {"role": "assistant", "content": text}, reason
    content, calls = parse_calls(model, spec, text)
    if not calls:
        return {"role": "assistant", "content": text}, reason
    message = {"role": "assistant", "content": content or None, "tool_calls": call_objects(calls)}
    return message, "tool_calls"


def _call_deltas(calls: list[ParsedCall]) -> list[dict]:
    """Name first, then the arguments, per call (what the official client assembles)."""
    deltas = []
    for k, obj in enumerate(call_objects(calls)):
        fn = obj["function"]
        head = {**obj, "index": k, "function": {"name": fn["name"], "arguments": ""}}
        deltas.append({"tool_calls": [head]})
        deltas.append({"tool_calls": [{"index": k, "function": {"arguments": fn["arguments"]}}]})
    return deltas


class ToolStream:
    """Per choice: turns streamed text into content deltas and tool-call deltas.

    `push` returns (delta, finish_reason) pairs; the last pair of a choice
    carries its finish_reason. Content that may open a call is held back.
    """

    def __init__(self, model: ServedModel, spec: ToolSpec) -> None:
        self.model = model
        self.spec = spec
        self.text = ""
        self.sent = 0  # characters of self.text already sent as content
        self.in_call = spec.choice in ("required", "named")
        self.named_id: str | None = None

    def _opens_call(self, rest: str) -> int | None:
        parser = self.model.tool_parser
        at = rest.find(parser.marker)
        if at >= 0:
            return at
        if isinstance(parser, Llama3JsonParser) and self.sent == 0 and rest.lstrip()[:1] == "{":
            return 0
        return None

    def _held(self, rest: str) -> int:
        """Length of the longest end of `rest` that could begin the call marker."""
        marker = self.model.tool_parser.marker
        for n in range(min(len(marker) - 1, len(rest)), 0, -1):
            if marker.startswith(rest[-n:]):
                return n
        return 0

    def push(self, text: str, reason: str | None) -> list[tuple[dict, str | None]]:
        self.text += text
        out: list[tuple[dict, str | None]] = []
        if self.spec.choice == "named":
            if self.named_id is None:
                self.named_id = new_call_id()
                head = {"index": 0, "id": self.named_id, "type": "function"}
                head["function"] = {"name": self.spec.named, "arguments": ""}
                out.append(({"tool_calls": [head]}, None))
            if text:
                args = {"index": 0, "function": {"arguments": text}}
                out.append(({"tool_calls": [args]}, None))
            if reason is not None:
                out.append(({}, "tool_calls" if reason == "stop" else reason))
            return out
        if not self.in_call:
            rest = self.text[self.sent :]
            at = self._opens_call(rest)
            upto = at if at is not None else len(rest) - (0 if reason else self._held(rest))
            if upto > 0:
                out.append(({"content": rest[:upto]}, None))
                self.sent += upto
            self.in_call = at is not None
        if reason is None:
            return out
        rest = self.text[self.sent :]
        calls: list[ParsedCall] = []
        if self.in_call and reason == "stop":
            content, calls = parse_calls(self.model, self.spec, rest)
            rest = content
        if rest:
            out.append(({"content": rest}, None))
        out.extend((d, None) for d in _call_deltas(calls))
        out.append(({}, "tool_calls" if calls else reason))
        return out
