"""The hand-written OpenAPI 3.1 document served at /openapi.json.

Schemas describe what the routes accept and return; a response that does
not validate against its schema here is a bug in one or the other.
"""

from __future__ import annotations

from typing import Any

from . import __version__


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict:
    return {"description": description, **_json(_ref("Error"))}


_NUM = {"type": "number"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NULL = {"type": "null"}
# Placeholders that openapi_document() specializes for the served model.
_MODEL = {"type": "string"}
_TOKEN_ID = {"type": "integer", "minimum": 0}
_MAX_TOKENS = {"type": "integer", "minimum": 1}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, _NULL]}


def _obj(props: dict, required: list[str] | None = None, extra: bool = True) -> dict:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    if not extra:
        out["additionalProperties"] = False
    return out


_SAMPLING = {
    "max_tokens": _nullable(_MAX_TOKENS),
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
    "stream_options": _nullable(_obj({"include_usage": _nullable(_BOOL)})),
    "ignore_eos": _nullable(_BOOL),
}

_TEXT_PART = _obj({"type": {"const": "text"}, "text": _STR}, ["type", "text"])
_MESSAGE = _obj(
    {
        "role": {"enum": ["system", "user", "assistant", "tool", "developer"]},
        "content": {"anyOf": [_STR, {"type": "array", "items": _TEXT_PART}]},
        "name": _STR,
    },
    ["role", "content"],
)
_TOKEN_IDS = {"type": "array", "minItems": 1, "items": _TOKEN_ID}
_TOP = _obj(
    {"token": _STR, "logprob": _NUM, "bytes": {"type": "array", "items": _INT}},
    ["token", "logprob"],
)
_CHAT_LOGPROB = _obj(
    {
        "token": _STR,
        "logprob": _NUM,
        "bytes": {"type": "array", "items": _INT},
        "top_logprobs": {"type": "array", "items": _TOP},
    },
    ["token", "logprob", "top_logprobs"],
)
_CHAT_LOGPROBS = _nullable(
    _obj({"content": {"type": "array", "items": _CHAT_LOGPROB}}, ["content"])
)
_COMPLETION_LOGPROBS = _nullable(
    _obj(
        {
            "tokens": {"type": "array", "items": _STR},
            "token_logprobs": {"type": "array", "items": _NUM},
            "top_logprobs": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": _NUM},
            },
            "text_offset": {"type": "array", "items": _INT},
        }
    )
)
_FINISH = _nullable({"enum": ["stop", "length"]})

SCHEMAS: dict[str, dict] = {
    "Error": _obj(
        {
            "error": _obj(
                {"message": _STR, "type": _STR, "param": _nullable(_STR), "code": _nullable(_STR)},
                ["message", "type", "param", "code"],
            )
        },
        ["error"],
    ),
    "ChatCompletionRequest": _obj(
        {
            "model": _MODEL,
            "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
            "max_completion_tokens": _nullable(_MAX_TOKENS),
            "logprobs": _nullable(_BOOL),
            "top_logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": 20}),
            "add_generation_prompt": _nullable(_BOOL),
            **_SAMPLING,
        },
        ["model", "messages"],
    ),
    "CompletionRequest": _obj(
        {
            "model": _MODEL,
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
            **_SAMPLING,
        },
        ["model", "prompt"],
    ),
    "Usage": _obj(
        {
            "prompt_tokens": _INT,
            "completion_tokens": _INT,
            "total_tokens": _INT,
            "prompt_tokens_details": _obj({"cached_tokens": _INT}),
        },
        ["prompt_tokens", "completion_tokens", "total_tokens"],
    ),
    "Performance": _obj(
        {
            "prefill_time_ms": _NUM,
            "decode_time_ms": _NUM,
            "queue_time_ms": _NUM,
            "tokens_per_second": _NUM,
            "batch_size": _INT,
        },
        ["prefill_time_ms", "decode_time_ms", "queue_time_ms", "tokens_per_second", "batch_size"],
    ),
    "ChatCompletion": _obj(
        {
            "id": _STR,
            "object": {"const": "chat.completion"},
            "created": _INT,
            "model": _STR,
            "choices": {
                "type": "array",
                "items": _obj(
                    {
                        "index": _INT,
                        "message": _obj(
                            {"role": {"const": "assistant"}, "content": _STR}, ["role", "content"]
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
    "Completion": _obj(
        {
            "id": _STR,
            "object": {"const": "text_completion"},
            "created": _INT,
            "model": _STR,
            "choices": {
                "type": "array",
                "items": _obj(
                    {
                        "index": _INT,
                        "text": _STR,
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
    "ModelList": _obj(
        {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": _obj(
                    {
                        "id": _STR,
                        "object": {"const": "model"},
                        "created": _INT,
                        "owned_by": _STR,
                        "max_model_len": _INT,
                    },
                    ["id", "object", "created", "owned_by"],
                ),
            },
        },
        ["object", "data"],
    ),
    "SystemMetrics": _obj(
        {
            "cpu": _obj(
                {"utilization_percent": _NUM, "core_count": _INT},
                ["utilization_percent", "core_count"],
            ),
            "memory": _obj(
                {"used_gb": _NUM, "total_gb": _NUM, "utilization_percent": _NUM},
                ["used_gb", "total_gb", "utilization_percent"],
            ),
            "gpu": _nullable(
                _obj(
                    {
                        "utilization_percent": _NUM,
                        "memory_used_gb": _NUM,
                        "memory_total_gb": _NUM,
                        "temperature_c": _INT,
                    }
                )
            ),
            "engine": _obj(
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
            "cache": _obj(
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
    "Health": _obj({"status": _STR, "mode": _STR, "version": _STR}, ["status", "mode", "version"]),
    "Ready": _obj(
        {"ready": _BOOL, "engine_connected": _BOOL, "detail": _STR}, ["ready", "engine_connected"]
    ),
    "Version": _obj({"version": _STR, "protocol_version": _INT}, ["version", "protocol_version"]),
    "TokenizeRequest": {
        "anyOf": [
            _obj({"model": _nullable(_MODEL), "prompt": _STR}, ["prompt"]),
            _obj(
                {
                    "model": _nullable(_MODEL),
                    "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
                    "add_generation_prompt": _nullable(_BOOL),
                },
                ["messages"],
            ),
        ]
    },
    "TokenizeResponse": _obj(
        {"tokens": {"type": "array", "items": _INT}, "count": _INT, "max_model_len": _INT},
        ["tokens", "count", "max_model_len"],
    ),
    "DetokenizeRequest": _obj(
        {
            "model": _nullable(_MODEL),
            "tokens": {"type": "array", "items": _TOKEN_ID},
        },
        ["tokens"],
    ),
    "DetokenizeResponse": _obj({"prompt": _STR}, ["prompt"]),
}

_COMMON_ERRORS = {"401": _err("Missing or wrong API key")}
_GEN_ERRORS = {
    "400": _err("Invalid request (bad JSON, types, ranges, context overflow)"),
    "404": _err("Unknown model"),
    "413": _err("Body too large"),
    "502": _err("Engine unavailable"),
    "503": _err("Engine overloaded or shutting down (Retry-After)"),
    "504": _err("Engine timeout"),
    **_COMMON_ERRORS,
}


def _op(summary: str, ok: dict, errors: dict, body: str | None = None) -> dict:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **errors}}
    if body:
        op["requestBody"] = {"required": True, **_json(_ref(body))}
    return op


def _specialize(node: Any, subs: dict[int, Any]) -> Any:
    """A deep copy of node with the placeholder objects in subs replaced."""
    if id(node) in subs:
        return subs[id(node)]
    if isinstance(node, dict):
        return {k: _specialize(v, subs) for k, v in node.items()}
    if isinstance(node, list):
        return [_specialize(v, subs) for v in node]
    return node


def openapi_document(
    model_names: list[str] | None = None, vocab_size: int = 0, context_length: int = 0
) -> dict:
    """A fresh OpenAPI document; with a served model, names and limits are exact."""
    subs: dict[int, Any] = {}
    if model_names:
        subs[id(_MODEL)] = {"type": "string", "enum": list(model_names)}
    if vocab_size:
        subs[id(_TOKEN_ID)] = {"type": "integer", "minimum": 0, "maximum": vocab_size - 1}
    if context_length:
        subs[id(_MAX_TOKENS)] = {"type": "integer", "minimum": 1, "maximum": context_length}
    return _specialize(_document(), subs)


def _document() -> dict:
    event = _obj(
        {
            "data": {"type": "string", "contentMediaType": "application/json"},
            "event": _STR,
            "id": _STR,
        },
        ["data"],
    )
    stream = {"text/event-stream": {"schema": event}}
    chat_ok = {
        "description": "A completion, or an SSE stream when stream is true",
        "content": {**_json(_ref("ChatCompletion"))["content"], **stream},
    }
    cmpl_ok = {
        "description": "A completion, or an SSE stream when stream is true",
        "content": {**_json(_ref("Completion"))["content"], **stream},
    }
    no_engine = {"502": _err("Engine unavailable"), **_COMMON_ERRORS}
    tok_errors = {
        "400": _err("Invalid request"),
        "404": _err("Unknown model"),
        "413": _err("Body too large"),
        **no_engine,
    }
    paths = {
        "/v1/chat/completions": {
            "post": _op("Chat completion", chat_ok, _GEN_ERRORS, "ChatCompletionRequest")
        },
        "/v1/completions": {
            "post": _op("Text completion", cmpl_ok, _GEN_ERRORS, "CompletionRequest")
        },
        "/v1/models": {
            "get": _op(
                "Served models",
                {"description": "Model list", **_json(_ref("ModelList"))},
                no_engine,
            )
        },
        "/v1/metrics": {
            "get": _op(
                "System, engine and cache metrics",
                {"description": "Metrics", **_json(_ref("SystemMetrics"))},
                _COMMON_ERRORS,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": _STR}},
                },
                _COMMON_ERRORS,
            )
        },
        "/health": {
            "get": _op(
                "Liveness", {"description": "The gateway is up", **_json(_ref("Health"))}, {}
            )
        },
        "/ready": {
            "get": _op(
                "Readiness",
                {"description": "Engine connected", **_json(_ref("Ready"))},
                {"503": {"description": "Engine not connected", **_json(_ref("Ready"))}},
            )
        },
        "/tokenize": {
            "post": _op(
                "Tokenize a prompt or chat",
                {"description": "Tokens", **_json(_ref("TokenizeResponse"))},
                tok_errors,
                "TokenizeRequest",
            )
        },
        "/detokenize": {
            "post": _op(
                "Detokenize ids",
                {"description": "Text", **_json(_ref("DetokenizeResponse"))},
                tok_errors,
                "DetokenizeRequest",
            )
        },
        "/version": {
            "get": _op(
                "Version", {"description": "Versions", **_json(_ref("Version"))}, _COMMON_ERRORS
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "infer-server",
            "version": __version__,
            "description": "OpenAI-compatible gateway of infer",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }
