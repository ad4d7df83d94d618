"""`infer chat`: a terminal chat against a running OpenAI-compatible server.

Invariants: the conversation holds only completed turns (a failed or
interrupted answer drops its question); `/reset` keeps the system prompt.
Tokens are printed as they arrive.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import httpx

HELP = (
    "commands: /reset (forget the conversation), /result TEXT (answer the model's "
    "oldest open tool call, with --tools), /quit (leave), /help"
)


class ChatError(Exception):
    """The server refused a request or could not be reached; the message says why."""


def normalize_url(url: str) -> str:
    """Base URL without a trailing slash or /v1."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def error_message(response: httpx.Response) -> str:
    """The OpenAI-shaped error message of a failed response, or its status."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def sse_deltas(lines: Iterator[str]) -> Iterator[str]:
    """The content deltas of an OpenAI chat SSE stream, until [DONE]."""
    for kind, value in sse_events(lines):
        if kind == "content":
            yield value


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """("content", text) and ("tool", tool-call delta) of a chat SSE stream, until [DONE]."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ChatError(f"the server sent a malformed stream line: {data[:80]!r}") from None
        if "error" in chunk:
            raise ChatError(str(chunk["error"].get("message", chunk["error"])))
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                yield "content", delta["content"]
            for call in delta.get("tool_calls") or []:
                yield "tool", call


def add_tool_delta(calls: list[dict], delta: dict) -> str:
    """Merge one streamed tool-call delta into `calls`; the text to show for it."""
    index = delta.get("index", len(calls))
    fn = delta.get("function") or {}
    shown = ""
    while len(calls) <= index:
        calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if delta.get("id"):
        call["id"] = delta["id"]
    if fn.get("name"):
        call["function"]["name"] += fn["name"]
        shown = f"\n[tool call {fn['name']}] "
    if fn.get("arguments"):
        call["function"]["arguments"] += fn["arguments"]
        shown += fn["arguments"]
    return shown


class ChatSession:
    """A conversation with one model on one server."""

    def __init__(self, client: httpx.Client, model: str, args: argparse.Namespace) -> None:
        self.client = client
        self.model = model
        self.system = args.system
        self.params = {
            key: value
            for key, value in (("temperature", args.temperature), ("max_tokens", args.max_tokens))
            if value is not None
        }
        tools = getattr(args, "tools", None)
        if tools:
            self.params["tools"] = tools
        self.messages: list[dict[str, Any]] = []
        self.open_calls: list[str] = []  # ids of tool calls not answered yet
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.open_calls = []

    def ask(self, text: str, out: TextIO, role: str = "user") -> str:
        """Send one user turn (or, with role "tool", the result of the oldest open tool
        call), print the answer and its tool calls as they stream, keep both turns."""
        if role == "tool":
            if not self.open_calls:
                raise ChatError("there is no open tool call to answer")
            turn = {"role": "tool", "tool_call_id": self.open_calls[0], "content": text}
        else:
            turn = {"role": "user", "content": text}
        body = {
            "model": self.model,
            "messages": [*self.messages, turn],
            "stream": True,
            **self.params,
        }
        parts: list[str] = []
        calls: list[dict] = []
        try:
            with self.client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise ChatError(error_message(response))
                for kind, value in sse_events(response.iter_lines()):
                    if kind == "content":
                        parts.append(value)
                    out.write(value if kind == "content" else add_tool_delta(calls, value))
                    out.flush()
        except httpx.HTTPError as exc:
            raise ChatError(f"request failed: {exc}") from None
        answer = "".join(parts)
        reply: dict[str, Any] = {"role": "assistant", "content": answer}
        if calls:
            reply = {"role": "assistant", "content": answer or None, "tool_calls": calls}
        if role == "tool":
            self.open_calls.pop(0)
        self.messages += [turn, reply]
        self.open_calls += [c["id"] for c in calls]
        return answer


def pick_model(client: httpx.Client) -> str:
    """The first model the server lists."""
    try:
        response = client.get("/v1/models")
    except httpx.HTTPError as exc:
        raise ChatError(f"cannot reach the server: {exc}") from None
    if response.status_code != 200:
        raise ChatError(error_message(response))
    data = response.json().get("data") or []
    if not data:
        raise ChatError("the server lists no model")
    return str(data[0]["id"])


def chat_loop(session: ChatSession, read: Callable[[str], str], out: TextIO, err: TextIO) -> int:
    """Read lines until /quit or end of input; 0 at the end."""
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return 0
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            session.reset()
            out.write("(conversation cleared)\n")
            continue
        if line == "/help":
            out.write(HELP + "\n")
            continue
        role = "user"
        if line.startswith("/result "):
            role, line = "tool", line[len("/result ") :]
        out.write("assistant> ")
        out.flush()
        try:
            session.ask(line, out, role)
        except ChatError as exc:
            err.write(f"\nerror: {exc}\n")
            err.flush()
        except KeyboardInterrupt:
            err.write("\n(interrupted)\n")
        out.write("\n")
        out.flush()


def run(args: argparse.Namespace) -> int:
    """Entry point of `infer chat`."""
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    with httpx.Client(base_url=normalize_url(args.url), headers=headers, timeout=timeout) as client:
        try:
            model = args.model or pick_model(client)
        except ChatError as exc:
            sys.stderr.write(f"infer chat: error: {exc} ({args.url})\n")
            return 1
        sys.stdout.write(f"chatting with {model} at {normalize_url(args.url)}; {HELP}\n")
        return chat_loop(ChatSession(client, model, args), input, sys.stdout, sys.stderr)
