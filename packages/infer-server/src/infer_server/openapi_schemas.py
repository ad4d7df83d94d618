"""JSON Schemas of the gateway's request and response bodies (OpenAPI components).

`MODEL`, `TOKEN_ID` and `MAX_TOKENS` are placeholders: `openapi.openapi_document`
replaces them (by identity) with schemas exact for the served model.
"""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


_NUM = {"type": "number"}
_INT = {"type": "integer"}
STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NULL = {"type": "null"}
# Placeholders that openapi_document() specializes for the served model.
MODEL = {"type": "string"}
TOKEN_ID = {"type": "integer", "minimum": 0}
MAX_TOKENS = {"type": "integer", "minimum": 1}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, _NULL]}


def obj(props: dict, required: list[str] | None = None, extra: bool = True) -> dict:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    if not extra:
        out["additionalProperties"] = False
    return out


_SAMPLING = {
    "max_tokens": _nullable(MAX_TOKENS),
    "temperature": _nullable({"type": "number", "minimum": 0, "maximum": 2}),
    "top_p": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
    "top_k": _nullable({"type": "integer", "minimum": -1}),
    "min_p": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
    "seed": _nullable({"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}),
    "stop": _nullable(
        {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "maxItems": 16, "items": {"type": "string", "minLength": 1}},
            ]
        }
    ),
    "n": _nullable({"type": "integer", "minimum": 1, "maximum": 8}),
    "presence_penalty": _nullable({"type": "number", "minimum": -2, "maximum": 2}),
    "frequency_penalty": _nullable({"type": "number", "minimum": -2, "maximum": 2}),
    "repetition_penalty": _nullable({"type": "number", "minimum": 0.01, "maximum": 10}),
    "logit_bias": _nullable(
        {
            "type": "object",
            "propertyNames": {"pattern": "^[0-9]+$"},
            "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
        }
    ),
    "stream": _nullable(_BOOL),
    "stream_options": _nullable(obj({"include_usage": _nullable(_BOOL)}, extra=False)),
    "ignore_eos": _nullable(_BOOL),
    # accepted without effect (fields.NO_EFFECT); every other field is refused
    "user": {},
    "safety_identifier": {},
    "metadata": {},
    "prompt_cache_key": {},
    "store": _nullable({"const": False}),
    "service_tier": _nullable({"enum": ["auto", "default"]}),
}

_TEXT_PART = obj({"type": {"const": "text"}, "text": STR}, ["type", "text"])
_CONTENT = {"anyOf": [STR, {"type": "array", "items": _TEXT_PART}]}
_JSON_OBJECT = {"type": "object"}  # any JSON Schema; the gateway checks it (structured.py)
_TOOL_CALL = obj(
    {
        "id": STR,
        "type": {"const": "function"},
        "function": obj({"name": STR, "arguments": STR}, ["name", "arguments"]),
    },
    ["id", "type", "function"],
)
_MESSAGE = {
    "anyOf": [
        obj(
            {"role": {"enum": ["system", "user", "developer"]}, "content": _CONTENT, "name": STR},
            ["role", "content"],
            extra=False,
        ),
        obj(
            {
                "role": {"const": "assistant"},
                "content": _nullable(_CONTENT),
                "name": STR,
                "tool_calls": _nullable({"type": "array", "items": _TOOL_CALL}),
            },
            ["role"],
            extra=False,
        ),
        obj(
            {"role": {"const": "tool"}, "content": _CONTENT, "tool_call_id": STR},
            ["role", "content", "tool_call_id"],
            extra=False,
        ),
    ]
}
_TOOL = obj(
    {
        "type": {"const": "function"},
        "function": obj(
            {"name": STR, "description": STR, "parameters": _JSON_OBJECT, "strict": _BOOL},
            ["name"],
        ),
    },
    ["type", "function"],
)
_TOOL_CHOICE = _nullable(
    {
        "anyOf": [
            {"enum": ["none", "auto", "required"]},
            obj(
                {"type": {"const": "function"}, "function": obj({"name": STR}, ["name"])},
                ["type", "function"],
            ),
        ]
    }
)
_RESPONSE_FORMAT = _nullable(
    {
        "anyOf": [
            obj({"type": {"enum": ["text", "json_object"]}}, ["type"], extra=False),
            obj(
                {
                    "type": {"const": "json_schema"},
                    "json_schema": obj(
                        {
                            "name": STR,
                            "description": STR,
                            "schema": _JSON_OBJECT,
                            "strict": _nullable(_BOOL),
                        },
                        ["name"],
                        extra=False,
                    ),
                },
                ["type", "json_schema"],
                extra=False,
            ),
        ]
    }
)
# vLLM's extension fields on /v1/completions (structured.GUIDED_FIELDS)
_GUIDED = {
    "guided_json": _nullable(_JSON_OBJECT),
    "guided_regex": _nullable(STR),
    "guided_choice": _nullable({"type": "array", "minItems": 1, "items": STR}),
    "guided_grammar": _nullable(STR),
}
_TOKEN_IDS = {"type": "array", "minItems": 1, "items": TOKEN_ID}
_TOP = obj(
    {"token": STR, "logprob": _NUM, "bytes": {"type": "array", "items": _INT}},
    ["token", "logprob"],
)
_CHAT_LOGPROB = obj(
    {
        "token": STR,
        "logprob": _NUM,
        "bytes": {"type": "array", "items": _INT},
        "top_logprobs": {"type": "array", "items": _TOP},
    },
    ["token", "logprob", "top_logprobs"],
)
_CHAT_LOGPROBS = _nullable(obj({"content": {"type": "array", "items": _CHAT_LOGPROB}}, ["content"]))
_COMPLETION_LOGPROBS = _nullable(
    obj(
        {
            "tokens": {"type": "array", "items": STR},
            "token_logprobs": {"type": "array", "items": _NUM},
            "top_logprobs": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": _NUM},
            },
            "text_offset": {"type": "array", "items": _INT},
        }
    )
)
_FINISH = _nullable({"enum": ["stop", "length", "tool_calls"]})

SCHEMAS: dict[str, dict] = {
    "Error": obj(
        {
            "error": obj(
                {"message": STR, "type": STR, "param": _nullable(STR), "code": _nullable(STR)},
                ["message", "type", "param", "code"],
            )
        },
        ["error"],
    ),
    "ChatCompletionRequest": obj(
        {
            "model": MODEL,
            "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
            "max_completion_tokens": _nullable(MAX_TOKENS),
            "logprobs": _nullable(_BOOL),
            "top_logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": 20}),
            "add_generation_prompt": _nullable(_BOOL),
            "response_format": _RESPONSE_FORMAT,
            "tools": _nullable({"type": "array", "items": _TOOL}),
            "tool_choice": _TOOL_CHOICE,
            "parallel_tool_calls": _nullable(_BOOL),
            **_SAMPLING,
        },
        ["model", "messages"],
        extra=False,
    ),
    "CompletionRequest": obj(
        {
            "model": MODEL,
            "prompt": {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                    _TOKEN_IDS,
                    {"type": "array", "minItems": 1, "items": _TOKEN_IDS},
                ]
            },
            "logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": 20}),
            "echo": _nullable(_BOOL),
            "best_of": _nullable({"type": "integer", "minimum": 1, "maximum": 8}),
            "response_format": _RESPONSE_FORMAT,
            **_GUIDED,
            **_SAMPLING,
        },
        ["model", "prompt"],
        extra=False,
    ),
    "Usage": obj(
        {
            "prompt_tokens": _INT,
            "completion_tokens": _INT,
            "total_tokens": _INT,
            "prompt_tokens_details": obj({"cached_tokens": _INT}),
        },
        ["prompt_tokens", "completion_tokens", "total_tokens"],
    ),
    "Performance": obj(
        {
            "prefill_time_ms": _NUM,
            "decode_time_ms": _NUM,
            "queue_time_ms": _NUM,
            "tokens_per_second": _NUM,
            "batch_size": _INT,
        },
        ["prefill_time_ms", "decode_time_ms", "queue_time_ms", "tokens_per_second", "batch_size"],
    ),
    "ChatCompletion": obj(
        {
            "id": STR,
            "object": {"const": "chat.completion"},
            "created": _INT,
            "model": STR,
            "choices": {
                "type": "array",
                "items": obj(
                    {
                        "index": _INT,
                        "message": obj(
                            {
                                "role": {"const": "assistant"},
                                "content": _nullable(STR),
                                "tool_calls": {"type": "array", "items": _TOOL_CALL},
                            },
                            ["role", "content"],
                        ),
                        "logprobs": _CHAT_LOGPROBS,
                        "finish_reason": _FINISH,
                    },
                    ["index", "message", "finish_reason"],
                ),
            },
            "usage": _ref("Usage"),
            "performance": _ref("Performance"),
        },
        ["id", "object", "created", "model", "choices", "usage"],
    ),
    "Completion": obj(
        {
            "id": STR,
            "object": {"const": "text_completion"},
            "created": _INT,
            "model": STR,
            "choices": {
                "type": "array",
                "items": obj(
                    {
                        "index": _INT,
                        "text": STR,
                        "logprobs": _COMPLETION_LOGPROBS,
                        "finish_reason": _FINISH,
                    },
                    ["index", "text", "finish_reason"],
                ),
            },
            "usage": _ref("Usage"),
            "performance": _ref("Performance"),
        },
        ["id", "object", "created", "model", "choices", "usage"],
    ),
    "Model": obj(
        {
            "id": STR,
            "object": {"const": "model"},
            "created": _INT,
            "owned_by": STR,
            "max_model_len": _INT,
        },
        ["id", "object", "created", "owned_by"],
    ),
    "ModelList": obj(
        {
            "object": {"const": "list"},
            "data": {"type": "array", "items": _ref("Model")},
        },
        ["object", "data"],
    ),
    "SystemMetrics": obj(
        {
            "cpu": obj(
                {"utilization_percent": _NUM, "core_count": _INT},
                ["utilization_percent", "core_count"],
            ),
            "memory": obj(
                {"used_gb": _NUM, "total_gb": _NUM, "utilization_percent": _NUM},
                ["used_gb", "total_gb", "utilization_percent"],
            ),
            "gpu": _nullable(
                obj(
                    {
                        "utilization_percent": _NUM,
                        "memory_used_gb": _NUM,
                        "memory_total_gb": _NUM,
                        "temperature_c": _INT,
                    }
                )
            ),
            "engine": obj(
                {
                    k: (_NUM if k.startswith("avg") else _INT)
                    for k in [
                        "total_requests",
                        "completed_requests",
                        "failed_requests",
                        "total_tokens_generated",
                        "avg_queue_time_ms",
                        "avg_prefill_time_ms",
                        "avg_decode_time_ms",
                        "queue_size",
                        "queue_capacity",
                        "concurrent_requests",
                    ]
                }
            ),
            "cache": obj(
                {
                    "hit_rate": _NUM,
                    **{
                        k: _INT
                        for k in [
                            "hits",
                            "misses",
                            "evictable_size",
                            "protected_size",
                            "total_cached",
                            "total_capacity",
                            "evictions",
                            "node_count",
                        ]
                    },
                }
            ),
        },
        ["cpu", "memory", "gpu", "engine", "cache"],
    ),
    "Health": obj({"status": STR, "mode": STR, "version": STR}, ["status", "mode", "version"]),
    "Ready": obj(
        {"ready": _BOOL, "engine_connected": _BOOL, "detail": STR}, ["ready", "engine_connected"]
    ),
    "Version": obj({"version": STR, "protocol_version": _INT}, ["version", "protocol_version"]),
    "TokenizeRequest": {
        "anyOf": [
            obj(
                {
                    "model": _nullable(MODEL),
                    "prompt": STR,
                    "add_special_tokens": _nullable(_BOOL),
                },
                ["prompt"],
                extra=False,
            ),
            obj(
                {
                    "model": _nullable(MODEL),
                    "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
                    "add_generation_prompt": _nullable(_BOOL),
                    "tools": _nullable({"type": "array", "items": _TOOL}),
                },
                ["messages"],
                extra=False,
            ),
        ]
    },
    "TokenizeResponse": obj(
        {"tokens": {"type": "array", "items": _INT}, "count": _INT, "max_model_len": _INT},
        ["tokens", "count", "max_model_len"],
    ),
    "DetokenizeRequest": obj(
        {
            "model": _nullable(MODEL),
            "tokens": {"type": "array", "items": TOKEN_ID},
        },
        ["tokens"],
        extra=False,
    ),
    "DetokenizeResponse": obj({"prompt": STR}, ["prompt"]),
}
