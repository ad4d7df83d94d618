"""Request parsing, settings and the OpenAPI document (no processes)."""

from __future__ import annotations

import pytest

from infer_server import fields
from infer_server.config import parse_settings
from infer_server.errors import APIError
from infer_server.openapi import openapi_document
from infer_server.validation import parse_chat, parse_completion, resolve_max_tokens

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def error_of(fn, body) -> APIError:
    with pytest.raises(APIError) as info:
        fn(body)
    assert info.value.status == 400
    return info.value


def test_chat_defaults_are_the_seeds():
    req = parse_chat(CHAT)
    s = req.sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.top_k, s.n) == (None, 0.7, 0.9, 50, 1)
    assert req.messages == [{"role": "user", "content": "hi"}]
    assert req.add_generation_prompt


def test_chat_accepts_everything_documented():
    req = parse_chat(
        {
            **CHAT,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
            "max_completion_tokens": 7,
            "temperature": 0,
            "top_p": 1,
            "top_k": -1,
            "min_p": 0.1,
            "seed": 3,
            "stop": "x",
            "n": 8,
            "presence_penalty": 1,
            "frequency_penalty": -1,
            "repetition_penalty": 1.1,
            "logit_bias": {"42": -100},
            "logprobs": True,
            "top_logprobs": 20,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
            "user": "ignored",
        }
    )
    s = req.sampling
    assert req.messages[0]["content"] == "ab"
    assert s.max_tokens == 7 and s.stop == ("x",) and s.logit_bias == {42: -100.0}
    assert s.logprobs and s.top_logprobs == 20 and s.include_usage and s.ignore_eos and s.n == 8


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"model": 3}, "model"),
        ({"model": None}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"n": 9}, "n"),
        ({"stop": [1]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"1": 500}}, "logit_bias"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"messages": [{"role": "user", "content": "x", "name": {}}]}, "messages[0].name"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": 1}, "stream_options"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_chat_rejects_with_param(patch, param):
    body = {**CHAT, **patch}
    err = error_of(parse_chat, body)
    assert err.param == param
    assert err.body()["error"]["type"] == "invalid_request_error"


def test_non_object_body():
    assert error_of(parse_chat, [1, 2]).status == 400


def test_completion_prompts():
    assert parse_completion({"model": "m", "prompt": "a"}).prompts == ["a"]
    assert parse_completion({"model": "m", "prompt": ["a", "b"]}).prompts == ["a", "b"]
    assert parse_completion({"model": "m", "prompt": [1, 2]}).prompts == [[1, 2]]
    assert parse_completion({"model": "m", "prompt": [[1], [2, 3]]}).prompts == [[1], [2, 3]]
    assert parse_completion({"model": "m", "prompt": "a", "logprobs": 3}).sampling.top_logprobs == 3
    for bad in (None, [], [[]], [-1], [1, "a"], 5):
        assert error_of(parse_completion, {"model": "m", "prompt": bad}).param == "prompt"
    assert (
        error_of(parse_completion, {"model": "m", "prompt": "a", "logprobs": 21}).param
        == "logprobs"
    )


def test_max_tokens_resolution_and_context_message():
    assert resolve_max_tokens(None, 10, 2048, "messages") == 512
    assert resolve_max_tokens(None, 2000, 2048, "messages") == 48
    assert resolve_max_tokens(38, 10, 48, "messages") == 38
    with pytest.raises(APIError) as info:
        resolve_max_tokens(100, 2000, 2048, "messages")
    assert info.value.message == (
        "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens "
        "(2000 in the messages, 100 in the completion). Please reduce the length of the messages or completion."
    )
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(APIError):
        resolve_max_tokens(None, 2048, 2048, "prompt")


def test_settings_flags_override_env():
    env = {
        "HOST": "127.0.0.9",
        "PORT": "9001",
        "ENGINE_ENDPOINT": "tcp://e:1",
        "LOG_LEVEL": "DEBUG",
        "API_KEY": "k",
    }
    s = parse_settings(["--insecure"], env)  # tcp://e:1 is plaintext off this machine
    assert (s.host, s.port, s.engine_endpoint, s.log_level, s.api_key) == (
        "127.0.0.9",
        9001,
        "tcp://e:1",
        "debug",
        "k",
    )
    s = parse_settings(
        [
            *("--port", "9002", "--cors-origins", "http://a", "http://b"),
            *("--served-model-name", "x", "--insecure"),
        ],
        env,
    )
    assert (
        s.port == 9002
        and s.cors_origins == ("http://a", "http://b")
        and s.served_model_names == ("x",)
    )
    assert parse_settings([], {}).cors_origins == ("*",)
    with pytest.raises(SystemExit):
        parse_settings(["--port", "70000"], {})


def test_openapi_document_is_valid_and_complete():
    from schemathesis.openapi import from_dict

    doc = openapi_document()
    schema = from_dict(doc)  # raises on an invalid document
    paths = set(doc["paths"])
    assert {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/metrics",
        "/metrics",
        "/health",
        "/ready",
        "/tokenize",
        "/detokenize",
        "/version",
    } <= paths
    assert len(list(schema.get_all_operations())) >= 10
    exact = openapi_document(["m", "alias"], vocab_size=100, context_length=2048)
    from_dict(exact)
    chat = exact["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert chat["model"] == {"type": "string", "enum": ["m", "alias"]}
    assert chat["max_tokens"]["anyOf"][0]["maximum"] == 2048
    detok = exact["components"]["schemas"]["DetokenizeRequest"]["properties"]["tokens"]
    assert detok["items"]["maximum"] == 99


@pytest.mark.parametrize(
    ("schema_name", "honoured"),
    [
        ("ChatCompletionRequest", fields.CHAT_FIELDS),
        ("CompletionRequest", fields.COMPLETION_FIELDS),
    ],
)
def test_openapi_declares_every_honoured_and_no_effect_field(schema_name, honoured):
    """The document forbids extra properties, so a field the gateway honours must be in it."""
    props = openapi_document()["components"]["schemas"][schema_name]["properties"]
    assert set(honoured) | set(fields.NO_EFFECT) <= set(props)
    assert not set(fields.NOT_SUPPORTED) & set(props)


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"functions": []}, "functions"),
        ({"response_format": {"type": "text", "bogus": 1}}, "response_format.bogus"),
        ({"store": True}, "store"),
        ({"service_tier": "priority"}, "service_tier"),
        ({"stop_token_ids": [1]}, "stop_token_ids"),
        ({"stream": True, "stream_options": {"include_usage": True, "x": 1}}, "stream_options.x"),
        (
            {"messages": [{"role": "user", "content": "x", "audio": {"id": "a"}}]},
            "messages[0].audio",
        ),
        (
            {"messages": [{"role": "user", "content": "x", "function_call": {}}]},
            "messages[0].function_call",
        ),
    ],
)
def test_fields_not_honoured_are_refused_by_name(patch, param):
    err = error_of(parse_chat, {**CHAT, **patch})
    assert err.param == param and "supported" in err.message


def test_no_effect_fields_and_nulls_pass():
    req = parse_chat(
        {
            **CHAT,
            "messages": [
                {"role": "developer", "content": "be kind", "name": "d"},
                {"role": "assistant", "content": "ok", "tool_calls": [], "refusal": None},
            ],
            "user": "u",
            "metadata": {"a": "b"},
            "store": False,
            "service_tier": "auto",
            "tools": None,
        }
    )
    assert req.messages == [
        {"role": "system", "content": "be kind", "name": "d"},
        {"role": "assistant", "content": "ok"},
    ]


def test_a_field_honoured_by_a_feature_is_accepted_in_one_place():
    from infer_server.fields import CHAT_FIELDS, refuse_unknown

    body = {"tools": [], "audio": {}}
    with pytest.raises(APIError):
        refuse_unknown(body, CHAT_FIELDS)
    refuse_unknown(body, CHAT_FIELDS | {"audio"})  # no error once the feature lists it


def test_switches_and_nan():
    assert error_of(parse_chat, {**CHAT, "stream_options": {}}).param == "stream_options"
    assert error_of(parse_chat, {**CHAT, "top_logprobs": 0}).param == "top_logprobs"
    assert "finite" in error_of(parse_chat, {**CHAT, "temperature": float("nan")}).message
    assert parse_chat({**CHAT, "stream": True, "stream_options": {}}).sampling.stream
