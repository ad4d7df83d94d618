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
from typing import TextIO

import httpx

HELP = "commands: /reset (forget the conversation), /quit (leave), /help"


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
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text


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
        self.messages: list[dict[str, str]] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def ask(self, text: str, out: TextIO) -> str:
        """Send one user turn, print the answer as it streams, keep both turns."""
        body = {
            "model": self.model,
            "messages": [*self.messages, {"role": "user", "content": text}],
            "stream": True,
            **self.params,
        }
        parts: list[str] = []
        try:
            with self.client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise ChatError(error_message(response))
                for delta in sse_deltas(response.iter_lines()):
                    parts.append(delta)
                    out.write(delta)
                    out.flush()
        except httpx.HTTPError as exc:
            raise ChatError(f"request failed: {exc}") from None
        answer = "".join(parts)
        self.messages += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": answer},
        ]
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
        out.write("assistant> ")
        out.flush()
        try:
            session.ask(line, out)
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
