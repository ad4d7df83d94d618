"""The per-app gateway state: settings, engine client, served model, metrics.

Routes reach it as `request.app.state.gateway`; nothing here is global.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request

from infer_protocol import ModelInfo

from .config import Settings
from .drain import Drain
from .engine_client import EngineClient
from .errors import APIError, engine_unavailable
from .metrics import GatewayMetrics
from .model import ServedModel
from .offload import Offload
from .templates import ChatTemplate

log = logging.getLogger("infer_server")


class Gateway:
    """Holds what routes share; `model` is replaced each time the engine (re)connects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.template_override: str | None = None
        if settings.chat_template_file:
            self.template_override = Path(settings.chat_template_file).read_text(encoding="utf-8")
            ChatTemplate(self.template_override)  # fail at startup, not at the first request
        self.model: ServedModel | None = None
        self.metrics = GatewayMetrics()
        self.drain = Drain()
        self.offload = Offload()
        self.client = EngineClient(
            settings.engine_endpoint,
            ping_interval=settings.ping_interval,
            dead_after=settings.engine_dead_after,
            hang_after=settings.request_timeout,
            on_model_info=self._on_model_info,
            curve=settings.curve,
        )

    def _on_model_info(self, info: ModelInfo) -> None:
        self.model = ServedModel(
            info,
            self.settings.served_model_names,
            self.template_override,
            self.settings.tool_call_parser,
        )
        self.offload.prestart(info.tokenizer_json)

    def require_model(self, name: str | None) -> ServedModel:
        """The served model if `name` is one of its names (404 otherwise, 502 if none yet)."""
        model = self.model
        if model is None:
            raise engine_unavailable("The inference engine is not available: no model loaded yet")
        if name is not None and name not in model.names:
            raise APIError(
                404,
                f"The model '{name}' does not exist; this server serves: {', '.join(model.names)}",
                param="model",
                code="model_not_found",
            )
        return model


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway
