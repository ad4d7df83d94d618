"""One timed streaming request to an OpenAI-compatible endpoint.

Timings use `time.perf_counter` from just before the request is sent:
TTFT is the arrival of the first non-empty content delta; ITL values are
the gaps between consecutive non-empty content deltas. A request never
raises: every failure becomes `RequestResult(ok=False, error=...)`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import attrs
import httpx


@attrs.define
class RequestResult:
    """What one request produced; times are in seconds."""

    ok: bool
    error: str | None = None
    ttft: float | None = None
    itl: list[float] = attrs.Factory(list)
    e2e: float = 0.0
    text: str = ""
    chunks: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens
    output_tokens: int = 0


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[float, str]]:
    """(arrival time, data) for each SSE event; comments and other fields are skipped."""
    data: list[str] = []
    arrived = 0.0
    async for line in lines:
        if not line:
            if data:
                yield arrived, "\n".join(data)
                data = []
            continue
        if line.startswith("data:"):
            if not data:
                arrived = time.perf_counter()
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield arrived, "\n".join(data)


def delta_text(chunk: dict) -> str:
    """The generated text in one chunk (chat delta content/reasoning or completion text)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    if "text" in choice:
        parts = [choice["text"]]
    else:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return ""
        parts = [delta.get("reasoning_content"), delta.get("content")]
    return "".join(p for p in parts if isinstance(p, str))


def error_message(status: int, body: bytes) -> str:
    """A short message for an HTTP error: the OpenAI error message when there is one."""
    text = body.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error")
        if isinstance(error, dict) and error.get("message"):
            text = str(error["message"])
        elif isinstance(error, str):
            text = error
    except (ValueError, AttributeError):
        pass
    return f"HTTP {status}: {text.strip()[:200]}"


async def stream_request(
    client: httpx.AsyncClient, url: str, body: dict, headers: dict[str, str]
) -> RequestResult:
    """POST `body` to `url` with streaming and time the deltas; never raises."""
    result = RequestResult(ok=False)
    start = time.perf_counter()
    last: float | None = None
    parts: list[str] = []
    finished = False
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                result.error = error_message(response.status_code, await response.aread())
                return result
            async for arrived, data in sse_events(response.aiter_lines()):
                if data.strip() == "[DONE]":
                    finished = True
                    break
                chunk = json.loads(data)
                if not isinstance(chunk, dict):
                    raise ValueError(f"stream chunk is not an object: {data[:100]}")
                if chunk.get("error"):
                    error = chunk["error"]
                    message = error.get("message") if isinstance(error, dict) else error
                    result.error = f"stream error: {str(message)[:200]}"
                    return result
                usage = chunk.get("usage")
                if isinstance(usage, dict):
                    result.prompt_tokens = usage.get("prompt_tokens")
                    result.completion_tokens = usage.get("completion_tokens")
                    details = usage.get("prompt_tokens_details")
                    if isinstance(details, dict):
                        result.cached_tokens = details.get("cached_tokens")
                choices = chunk.get("choices")
                if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                    finished = finished or bool(choices[0].get("finish_reason"))
                text = delta_text(chunk)
                if not text:
                    continue
                if last is None:
                    result.ttft = arrived - start
                else:
                    result.itl.append(arrived - last)
                last = arrived
                parts.append(text)
                result.chunks += 1
            result.e2e = time.perf_counter() - start  # before the connection is released
    except Exception as exc:  # any server misbehaviour fails this request, never the run
        result.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        return result
    finally:
        result.e2e = result.e2e or time.perf_counter() - start
        result.text = "".join(parts)
    if not finished:
        result.error = "stream ended without finish_reason or [DONE]"
    elif result.ttft is None:
        result.error = "empty output (no content deltas)"
    else:
        result.ok = True
    return result
