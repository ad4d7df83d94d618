"""The streaming client against a real HTTP test server (bench_sse_app.py)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from infer.bench.sse import delta_text, error_message, sse_events, stream_request
from infer.bench.tokens import CHUNKS, count_outputs, load_file_counter, probe_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro):
    return asyncio.run(coro)


async def one(url: str, body: dict, headers: dict | None = None):
    async with httpx.AsyncClient(timeout=10) as client:
        return await stream_request(client, url, body, headers or {})


def chat(text: str, n: int = 5, model: str = "test-model") -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": n,
        "stream": True,
    }


def test_chat_stream_is_timed(sse_url: str) -> None:
    r = run(one(sse_url + "/v1/chat/completions", chat("hello there", 6)))
    assert r.ok and r.error is None
    assert r.text == "w0 w1 w2 w3 w4 w5 "
    assert r.chunks == 6 and len(r.itl) == 5
    # the server sleeps 10 ms before each chunk
    assert 0.008 <= r.ttft < 1.0
    assert all(0.005 <= gap < 1.0 for gap in r.itl)
    assert r.e2e >= r.ttft + sum(r.itl) - 1e-6
    assert (r.prompt_tokens, r.completion_tokens) == (2, 6)


def test_completions_stream(sse_url: str) -> None:
    body = {"model": "test-model", "prompt": "x", "max_tokens": 3, "stream": True}
    r = run(one(sse_url + "/v1/completions", body))
    assert r.ok and r.text == "w0 w1 w2 " and len(r.itl) == 2


@pytest.mark.parametrize(
    ("text", "model", "error"),
    [
        ("FAIL400", "test-model", "HTTP 400: prompt asked for a failure"),
        ("hi", "nope", "HTTP 404: model 'nope' not found"),
        ("FAILMID", "test-model", "stream error: engine exploded"),
        ("CUT", "test-model", "stream ended without finish_reason or [DONE]"),
        ("BADJSON", "test-model", "JSONDecodeError: Expecting property name"),
        ("BADSHAPE", "test-model", "ValueError: stream chunk is not an object"),
    ],
)
def test_failures_become_results(sse_url: str, text: str, model: str, error: str) -> None:
    r = run(one(sse_url + "/v1/chat/completions", chat(text, 5, model)))
    assert not r.ok and r.error.startswith(error)


def test_slow_server_times_out(sse_url: str) -> None:
    async def go():
        async with httpx.AsyncClient(timeout=0.3) as client:
            url = sse_url + "/v1/chat/completions"
            return await stream_request(client, url, chat("SLOW"), {})

    r = run(go())
    assert not r.ok and r.error.startswith("ReadTimeout") and 0.3 <= r.e2e < 2.0


def test_refused_connection_is_a_failed_result() -> None:
    r = run(one(f"http://127.0.0.1:{free_port()}/v1/chat/completions", chat("hi")))
    assert not r.ok and r.error.startswith("ConnectError")


def test_sse_parser_joins_data_lines_and_skips_comments() -> None:
    async def lines():
        for line in [": comment", "event: x", "data: a", "data:b", "", "", "data: [DONE]"]:
            yield line

    async def collect():
        return [data async for _, data in sse_events(lines())]

    assert run(collect()) == ["a\nb", "[DONE]"]


def test_delta_text_and_error_message() -> None:
    assert delta_text({"choices": [{"delta": {"content": "a"}}]}) == "a"
    assert delta_text({"choices": [{"delta": {"reasoning_content": "r", "content": None}}]}) == "r"
    assert delta_text({"choices": [{"text": "t"}]}) == "t"
    assert delta_text({"choices": []}) == ""
    assert delta_text({"choices": [{"delta": "oops"}]}) == ""
    assert delta_text({"choices": "x"}) == ""
    assert delta_text({"choices": [{"text": None}]}) == ""
    assert error_message(503, b'{"error": {"message": "busy"}}') == "HTTP 503: busy"
    assert error_message(502, b"<html>bad gateway</html>") == "HTTP 502: <html>bad gateway</html>"


def test_server_tokenizer_probe_and_fallback(sse_url: str, plain_url: str) -> None:
    async def go():
        async with httpx.AsyncClient(timeout=10) as client:
            counter = await probe_server(client, sse_url, "test-model", {})
            assert counter is not None and counter.extra == {"add_special_tokens": False}
            assert await counter.count(["a b c", "", "d"]) == [3, 0, 1]
            assert await probe_server(client, plain_url, "test-model", {}) is None
            results = [
                await stream_request(client, sse_url + "/v1/chat/completions", chat("x", 4), {})
            ]
            assert await count_outputs(counter, results) == counter.source
            assert results[0].output_tokens == 4
            assert await count_outputs(None, results) == CHUNKS

    run(go())


def test_file_tokenizer_counts_without_special_tokens(tokenizer_json) -> None:
    counter = load_file_counter(tokenizer_json)
    assert run(counter.count(["w0 w1 w2 ", "w3"])) == [3, 1]
    assert load_file_counter(tokenizer_json.parent).source.endswith("tokenizer.json")
