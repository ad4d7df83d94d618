"""Streamed text chunks are spliced into a pre-encoded event (streaming.TextEvent):
byte-identical to encoding the whole chunk, and the same JSON shape on the wire."""

from __future__ import annotations

import json

import httpx
import pytest

from infer_server.streaming import TextEvent, sse

CHUNK = {
    "id": "chatcmpl-1",
    "created": 1,
    "model": "tiny",
    "object": "chat.completion.chunk",
    "choices": [
        {
            "index": 0,
            "delta": {"content": TextEvent.PLACEHOLDER},
            "logprobs": None,
            "finish_reason": None,
        }
    ],
    "usage": None,
}


@pytest.mark.parametrize(
    "text", ["", "plain", ' "quoted" \\ back', "line\nbreak\ttab", "héllo ✓ 日本", "\x00\x1f", "😀"]
)
def test_text_event_equals_encoding_the_whole_chunk(text: str) -> None:
    want = json.loads(
        json.dumps(CHUNK).replace(json.dumps(TextEvent.PLACEHOLDER), json.dumps(text))
    )
    assert TextEvent(CHUNK).render(text) == sse(want)


def test_text_event_needs_the_placeholder_once() -> None:
    with pytest.raises(ValueError):
        TextEvent({"a": "no placeholder"})
    with pytest.raises(ValueError):
        TextEvent({"a": TextEvent.PLACEHOLDER, "b": TextEvent.PLACEHOLDER})


def _events(gateway, path: str, body: dict) -> list[dict]:
    with httpx.stream("POST", gateway.url + path, json=body, timeout=60) as resp:
        assert resp.status_code == 200
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: ") :]) for line in lines[:-1]]


@pytest.mark.parametrize("include_usage", [False, True])
def test_streamed_chat_chunks_keep_their_shape(tiny_gateway, include_usage: bool) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Tell me a story"}],
        "stream": True,
        "max_tokens": 10,
        "temperature": 0,
        "ignore_eos": True,
        "n": 2,
        "stream_options": {"include_usage": include_usage},
    }
    events = _events(tiny_gateway, "/v1/chat/completions", body)
    chunks = [e for e in events if e["choices"]]
    keys = {"id", "created", "model", "object", "choices"} | ({"usage"} if include_usage else set())
    assert all(set(c) == keys for c in chunks)
    assert len({(c["id"], c["created"]) for c in chunks}) == 1
    text = [
        c
        for c in chunks
        if c["choices"][0]["finish_reason"] is None and "role" not in c["choices"][0]["delta"]
    ]
    assert text, "no text chunks streamed"
    for c in text:
        choice = c["choices"][0]
        assert c["object"] == "chat.completion.chunk" and c["model"] == "tiny"
        assert set(choice) == {"index", "delta", "logprobs", "finish_reason"}
        assert choice["index"] in (0, 1) and choice["logprobs"] is None
        assert set(choice["delta"]) == {"content"} and isinstance(choice["delta"]["content"], str)
        assert c.get("usage", None) is None
    assert {c["choices"][0]["index"] for c in text} == {0, 1}


def test_streamed_completion_chunks_keep_their_shape(tiny_gateway) -> None:
    body = {
        "model": "tiny",
        "prompt": "Once upon a time",
        "stream": True,
        "max_tokens": 10,
        "temperature": 0,
        "ignore_eos": True,
    }
    events = _events(tiny_gateway, "/v1/completions", body)
    assert [e["choices"][0]["finish_reason"] for e in events][-1] == "length"
    for e in events[:-1]:
        assert set(e) == {"id", "created", "model", "object", "choices"}
        assert e["object"] == "text_completion"
        assert e["choices"] == [
            {"index": 0, "text": e["choices"][0]["text"], "logprobs": None, "finish_reason": None}
        ]
        assert isinstance(e["choices"][0]["text"], str)
