"""Reading request bodies: content type, size limit, JSON syntax."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from .errors import APIError, bad_request

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


async def read_json(request: Request, max_bytes: int) -> Any:
    """The parsed JSON body; 400 for a wrong content type or bad JSON, 413 if too large."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise APIError(
            400,
            f"Content-Type must be application/json, got {ctype or 'none'}",
            code="invalid_content_type",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise bad_request(
            f"The request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise bad_request(
            "The request body has a string with a lone UTF-16 surrogate (\\ud800-\\udfff)",
            code="invalid_json",
        )
    return body


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string (key or value) in parsed JSON is not encodable as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _too_large(max_bytes: int) -> APIError:
    return APIError(
        413, f"The request body exceeds the limit of {max_bytes} bytes", code="request_too_large"
    )
