"""Unsupported request fields are refused by name; the no-effect ones are accepted (openai client).

Also the small conformance points: models.retrieve, stream_options / top_logprobs
needing their switch, NaN, the developer role and detokenize round trips.
"""

from __future__ import annotations

import httpx
import openai
import pytest

MESSAGES = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def refused(info: pytest.ExceptionInfo, param: str) -> str:
    """The 400 body's message, after checking its shape and that `param` names the field."""
    assert info.value.status_code == 400
    body = info.value.body
    assert body["type"] == "invalid_request_error" and body["param"] == param, body
    assert "not supported" in body["message"] or "not a supported field" in body["message"]
    assert param.rsplit(".", 1)[-1] in body["message"]
    return body["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"functions": [TOOL["function"]]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"response_format": {"type": "text", "x": 1}}, "response_format.x"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"store": True}, "store"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"extra_body": {"stop_token_ids": [1]}}, "stop_token_ids"),
        ({"extra_body": {"no_such_field": 1}}, "no_such_field"),
        ({"extra_body": {"suffix": "x"}}, "suffix"),
    ],
)
def test_chat_refuses_unsupported_fields_by_name(tiny_gateway, extra, param):
    client = tiny_gateway.openai()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2, **extra)
    refused(info, param)


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (
            [{"role": "user", "content": "x", "function_call": {"name": "f"}}],
            "messages[0].function_call",
        ),
    ],
)
def test_legacy_function_messages_are_refused(tiny_gateway, messages, param):
    with pytest.raises(openai.BadRequestError) as info:
        tiny_gateway.openai().chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    refused(info, param)


def test_completions_refuse_unsupported_fields(tiny_gateway):
    client = tiny_gateway.openai()
    for extra, param in (
        ({"suffix": "end"}, "suffix"),
        ({"extra_body": {"guided_decoding_backend": "xgrammar"}}, "guided_decoding_backend"),
        ({"extra_body": {"tools": [TOOL]}}, "tools"),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="tiny", prompt="a", max_tokens=2, **extra)
        refused(info, param)


def test_no_effect_fields_are_accepted(tiny_gateway):
    client = tiny_gateway.openai()
    out = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=2,
        user="u-1",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        extra_body={"safety_identifier": "s", "prompt_cache_key": "p", "response_format": None},
    )
    assert out.choices[0].finish_reason in ("stop", "length")
    out = client.completions.create(model="tiny", prompt="a", max_tokens=2, user="u-1")
    assert out.choices[0].text is not None


def test_tokenize_refuses_unknown_fields(tiny_gateway):
    r = httpx.post(tiny_gateway.url + "/tokenize", json={"prompt": "a", "tool_choice": "auto"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice"


def test_models_retrieve(tiny_gateway):
    client = tiny_gateway.openai()
    card = client.models.retrieve("tiny")
    assert card.id == "tiny" and card.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_switch_fields_need_their_switch_and_nan_is_named(tiny_gateway):
    client = tiny_gateway.openai()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=2, stream_options={"include_usage": True}
        )
    assert info.value.body["param"] == "stream_options"
    assert "stream" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=2, top_logprobs=2
        )
    assert info.value.body["param"] == "top_logprobs"
    assert "logprobs" in info.value.body["message"]
    r = httpx.post(
        tiny_gateway.url + "/v1/chat/completions",
        content=b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], '
        b'"temperature": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "temperature" and error["message"] == (
        "'temperature' must be a finite number, got nan"
    )


def test_developer_role_is_system_and_detokenize_round_trips(tiny_gateway):
    url = tiny_gateway.url
    as_system = [{"role": "system", "content": "Be brief."}, *MESSAGES]
    as_developer = [{"role": "developer", "content": "Be brief."}, *MESSAGES]
    tokens = httpx.post(url + "/tokenize", json={"messages": as_system}).json()["tokens"]
    assert httpx.post(url + "/tokenize", json={"messages": as_developer}).json()["tokens"] == tokens
    text = httpx.post(url + "/detokenize", json={"tokens": tokens}).json()["prompt"]
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")  # special tokens kept
    again = httpx.post(url + "/tokenize", json={"prompt": text}).json()["tokens"]
    assert again == tokens
    out = tiny_gateway.openai().chat.completions.create(
        model="tiny", messages=as_developer, max_tokens=2, temperature=0
    )
    assert out.usage.prompt_tokens == len(tokens)
