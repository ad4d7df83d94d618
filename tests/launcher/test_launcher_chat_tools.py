"""`infer chat` with tools: streamed tool-call deltas assemble and show (no server needed)."""

from __future__ import annotations

import json

from infer.chat import add_tool_delta, sse_deltas, sse_events

LINES = [
    'data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}',
    'data: {"choices": [{"index": 0, "delta": {"content": "Let me see."}}]}',
    'data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a",'
    ' "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]}',
    'data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,'
    ' "function": {"arguments": "{\\"city\\": "}}]}}]}',
    'data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,'
    ' "function": {"arguments": "\\"Oslo\\"}"}}]}}]}',
    'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}',
    "data: [DONE]",
]


def test_tool_call_deltas_assemble_and_show() -> None:
    calls: list[dict] = []
    shown = []
    for kind, value in sse_events(iter(LINES)):
        shown.append(value if kind == "content" else add_tool_delta(calls, value))
    assert "".join(shown) == 'Let me see.\n[tool call get_weather] {"city": "Oslo"}'
    assert calls == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo"}
    assert list(sse_deltas(iter(LINES))) == ["Let me see."]
