"""The hand-written OpenAPI 3.1 document served at /openapi.json.

Schemas describe what the routes accept and return; a response that does
not validate against its schema here is a bug in one or the other.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .openapi_schemas import MAX_TOKENS, MODEL, SCHEMAS, STR, TOKEN_ID, obj


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict:
    return {"description": description, **_json(_ref("Error"))}


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
        subs[id(MODEL)] = {"type": "string", "enum": list(model_names)}
    if vocab_size:
        subs[id(TOKEN_ID)] = {"type": "integer", "minimum": 0, "maximum": vocab_size - 1}
    if context_length:
        subs[id(MAX_TOKENS)] = {"type": "integer", "minimum": 1, "maximum": context_length}
    return _specialize(_document(), subs)


def _document() -> dict:
    event = obj(
        {
            "data": {"type": "string", "contentMediaType": "application/json"},
            "event": STR,
            "id": STR,
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
        "/v1/models/{model_id}": {
            "get": {
                **_op(
                    "One served model",
                    {"description": "The model", **_json(_ref("Model"))},
                    {"404": _err("Unknown model"), **no_engine},
                ),
                "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": STR}],
            }
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
                    "content": {"text/plain": {"schema": STR}},
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
