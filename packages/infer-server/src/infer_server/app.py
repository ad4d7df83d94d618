"""The Starlette app factory: routes, middleware, error handlers, lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import webui
from .admission import AdmissionMiddleware
from .config import Settings
from .drain import DrainMiddleware
from .errors import APIError
from .middleware import AccessLogMiddleware, ApiKeyMiddleware
from .openapi import openapi_document
from .ratelimit import RateLimitMiddleware
from .routes import chat, completions, misc
from .state import Gateway

log = logging.getLogger("infer_server")


def api_routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat.chat_completions, methods=["POST"]),
        Route("/v1/completions", completions.completions, methods=["POST"]),
        Route("/v1/models", misc.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", misc.model, methods=["GET"]),
        Route("/v1/metrics", misc.v1_metrics, methods=["GET"]),
        Route("/metrics", misc.prometheus, methods=["GET"]),
        Route("/health", misc.health, methods=["GET"]),
        Route("/ready", misc.ready, methods=["GET"]),
        Route("/tokenize", misc.tokenize, methods=["POST"]),
        Route("/detokenize", misc.detokenize, methods=["POST"]),
        Route("/version", misc.version, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
    ]


async def _openapi(request: Request) -> Response:
    gw = request.app.state.gateway
    model = gw.model
    if model is None:
        return JSONResponse(openapi_document())
    return JSONResponse(openapi_document(gw.models.names, model.vocab_size, model.context_length))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}"
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return APIError(exc.status_code, message, code=code, headers=dict(exc.headers or {})).response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return APIError(500, "Internal server error", code="internal_error").response()


def create_app(settings: Settings) -> Starlette:
    """A gateway app; the engine connections open and close with its lifespan."""
    gw = Gateway(settings)
    routes = api_routes()
    endpoints = frozenset(r.path for r in routes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.pool.start()
        try:
            yield
        finally:
            await gw.pool.close()
            gw.offload.close()

    app = Starlette(
        routes=[*routes, *webui.routes()],
        middleware=[
            Middleware(AccessLogMiddleware, metrics=gw.metrics, endpoints=endpoints),
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["*"],
                allow_headers=["*"],
                allow_credentials=False,
            ),
            Middleware(DrainMiddleware, drain=gw.drain),
            Middleware(
                ApiKeyMiddleware,
                api_key=settings.api_key,
                is_public=getattr(webui, "is_public_path", lambda path: False),
            ),
            Middleware(
                RateLimitMiddleware,
                per_minute=settings.rate_limit,
                by_api_key=settings.api_key is not None,
                is_public=getattr(webui, "is_public_path", lambda path: False),
            ),
            Middleware(AdmissionMiddleware, gate=gw.pool.gate, registry=gw.metrics.registry),
        ],
        exception_handlers={
            APIError: _api_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app
