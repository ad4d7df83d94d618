"""ASGI middleware: API-key check and one access-log line per request."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError
from .metrics import GatewayMetrics

access_log = logging.getLogger("infer_server.access")
OPEN_PATHS = frozenset({"/health", "/ready"})


def exempt(scope: Scope, is_public: Callable[[str], bool]) -> bool:
    """True for what no key or rate limit applies to: non-HTTP scopes, /health,
    /ready, public web UI paths and CORS preflights."""
    return (
        scope["type"] != "http"
        or scope["path"] in OPEN_PATHS
        or is_public(scope["path"])
        or scope["method"] == "OPTIONS"
    )


class ApiKeyMiddleware:
    """Require `Authorization: Bearer <key>` on every path but /health, /ready and
    the paths `is_public` accepts (the web UI's static pages, which hold no data)."""

    def __init__(
        self, app: ASGIApp, api_key: str | None, is_public: Callable[[str], bool] = lambda p: False
    ) -> None:
        self.app = app
        self._key = api_key.encode() if api_key else None
        self._is_public = is_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._key is None or exempt(scope, self._is_public):
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
            error = APIError(
                401,
                "Invalid or missing API key; send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await error.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)


class AccessLogMiddleware:
    """Log id, method, path, status, tokens and latency; count requests by status."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, endpoints: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        request_id = uuid.uuid4().hex[:12]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope["path"]
            endpoint = path if path in self.endpoints else "other"
            self.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            access_log.info(
                "id=%s %s %s status=%s prompt_tokens=%s completion_tokens=%s latency_ms=%.1f",
                request_id,
                scope["method"],
                path,
                status,
                state.get("prompt_tokens", 0),
                state.get("completion_tokens", 0),
                (time.monotonic() - start) * 1000,
            )
