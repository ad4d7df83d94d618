"""Tool calling through the official client against the default model (SmolLM2-135M)."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 20},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
ADD = {
    "type": "object",
    "properties": {
        "a": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "b": {"type": "integer", "minimum": -1000, "maximum": 1000},
    },
    "required": ["a", "b"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {"name": "add", "description": "Add two numbers", "parameters": ADD},
    },
]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
QUESTIONS = ["What is the weather in Paris?", "What is 12 plus 30?", "Is it cold in Oslo today?"]


def ask(client: openai.OpenAI, question: str, **kw):
    return client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": question}],
        tools=TOOLS,
        temperature=0,
        max_tokens=120,
        **kw,
    )


def check_call(call, name: str | None = None) -> None:
    assert call.type == "function" and call.id.startswith("call_")
    assert name is None or call.function.name == name
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_required_and_named_always_return_a_valid_call(smol_gateway) -> None:
    client = smol_gateway.openai()
    for question in QUESTIONS:
        out = ask(client, question, tool_choice="required")
        choice = out.choices[0]
        assert choice.finish_reason == "tool_calls", choice.message.content
        assert choice.message.tool_calls
        for call in choice.message.tool_calls:
            check_call(call)
        out = ask(client, question, tool_choice={"type": "function", "function": {"name": "add"}})
        choice = out.choices[0]
        assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
        check_call(choice.message.tool_calls[0], "add")
    out = ask(client, QUESTIONS[0], tool_choice="required", parallel_tool_calls=False)
    assert len(out.choices[0].message.tool_calls) == 1


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_a_streamed_tool_call_assembles_in_the_client(smol_gateway, choice) -> None:
    client = smol_gateway.openai()
    with client.chat.completions.stream(
        model="smollm2",
        messages=[{"role": "user", "content": "Weather in Rome, please."}],
        tools=TOOLS,
        tool_choice=choice,
        temperature=0,
        max_tokens=120,
    ) as stream:
        final = stream.get_final_completion()
    choice_out = final.choices[0]
    assert choice_out.finish_reason == "tool_calls"
    assert choice_out.message.tool_calls
    for call in choice_out.message.tool_calls:
        check_call(call)
    # the raw chunks: name first (with the id), then argument fragments
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Weather in Rome, please."}],
            tools=TOOLS,
            tool_choice=choice,
            temperature=0,
            max_tokens=120,
            stream=True,
        )
    )
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name and deltas[0].id
    assert all(d.function.name is None for d in deltas[1:] if d.index == deltas[0].index)
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == [
        "tool_calls"
    ]


def test_auto_returns_content_or_valid_calls(smol_gateway) -> None:
    client = smol_gateway.openai()
    for question in QUESTIONS[:2]:
        choice = ask(client, question, tool_choice="auto").choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
            for call in choice.message.tool_calls:
                assert call.function.name in SCHEMAS
                json.loads(call.function.arguments)
        else:
            assert choice.finish_reason in ("stop", "length") and choice.message.content


HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city": "Paris", "unit": "celsius"}',
                },
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
]


def test_a_history_with_tool_calls_renders_through_the_template(smol_gateway) -> None:
    r = httpx.post(smol_gateway.url + "/tokenize", json={"messages": HISTORY, "tools": TOOLS})
    assert r.status_code == 200, r.text
    text = httpx.post(smol_gateway.url + "/detokenize", json={"tokens": r.json()["tokens"]}).json()[
        "prompt"
    ]
    assert "<tools>" in text and '"name": "get_weather"' in text and '"add"' in text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"' in text
    assert '<tool_response>\n{"temp": 21}\n</tool_response>' in text
    assert text.endswith("<|im_start|>assistant\n")
    # and the model answers from it
    out = smol_gateway.openai().chat.completions.create(
        model="smollm2",
        messages=HISTORY,
        tools=TOOLS,
        tool_choice="none",
        max_tokens=30,
        temperature=0,
    )
    assert out.choices[0].message.content and not out.choices[0].message.tool_calls


@pytest.mark.parametrize(
    "patch, param",
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
            "tools[0].function.parameters",
        ),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        (
            {
                "messages": [
                    *HISTORY[:1],
                    {"role": "tool", "tool_call_id": "call_9", "content": "x"},
                ]
            },
            "messages[1].tool_call_id",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice"),
    ],
)
def test_tool_errors_are_400s_naming_the_field(smol_gateway, patch, param) -> None:
    body = {"model": "smollm2", "messages": HISTORY[:1], "tools": TOOLS, "max_tokens": 4, **patch}
    r = httpx.post(smol_gateway.url + "/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_infer_chat_shows_a_tool_call_and_answers_it(smol_gateway) -> None:
    import argparse
    import io

    from infer.chat import ChatSession

    args = argparse.Namespace(system=None, temperature=0.0, max_tokens=60, tools=TOOLS)
    with httpx.Client(base_url=smol_gateway.url, timeout=120) as client:
        session = ChatSession(client, "smollm2", args)
        session.params["tool_choice"] = {"type": "function", "function": {"name": "get_weather"}}
        out = io.StringIO()
        session.ask("Weather in Oslo?", out)
        assert out.getvalue().startswith("\n[tool call get_weather] {")
        call = session.messages[-1]["tool_calls"][0]
        check_call(openai.types.chat.ChatCompletionMessageToolCall.model_validate(call))
        assert session.open_calls == [call["id"]]
        session.params["tool_choice"] = "none"
        answer = session.ask('{"temp": -3}', io.StringIO(), role="tool")
        assert answer and session.open_calls == []
        assert [m["role"] for m in session.messages] == ["user", "assistant", "tool", "assistant"]
