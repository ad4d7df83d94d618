"""The per-app gateway state: settings, engine pool, served models, metrics.

Routes reach it as `request.app.state.gateway`; nothing here is global.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request

from infer_protocol import ModelInfo

from .config import Settings
from .drain import Drain
from .engine_pool import EnginePool
from .errors import engine_unavailable
from .metrics import GatewayMetrics
from .model import ServedModel
from .offload import Offload
from .pool_metrics import PoolCollector
from .routing import make_router
from .served_models import ServedModels
from .templates import ChatTemplate

log = logging.getLogger("infer_server")


class Gateway:
    """Holds what routes share; `models` gains or replaces a model whenever an engine
    (re)connects with its ModelInfo."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.template_override: str | None = None
        if settings.chat_template_file:
            self.template_override = Path(settings.chat_template_file).read_text(encoding="utf-8")
            ChatTemplate(self.template_override)  # fail at startup, not at the first request
        self.models = ServedModels(
            settings.served_model_names, self.template_override, settings.tool_call_parser
        )
        self.metrics = GatewayMetrics()
        self.drain = Drain()
        self.offload = Offload()
        self.pool = EnginePool(
            settings.engine_endpoints,
            make_router(settings.routing, **settings.router_options),
            self.models,
            ping_interval=settings.ping_interval,
            dead_after=settings.engine_dead_after,
            hang_after=settings.request_timeout,
            on_model=self._on_model_info,
            curve=settings.curve,
        )
        self.metrics.registry.register(PoolCollector(self.pool))

    def _on_model_info(self, info: ModelInfo) -> None:
        self.offload.prestart(info.tokenizer_json)

    @property
    def model(self) -> ServedModel | None:
        """The first model served (None before any engine answered)."""
        return self.models.first()

    def require_model(self, name: str | None) -> ServedModel:
        """The model served as `name` (any model for None): 404 when no engine ever served
        that name, 502 when no engine has answered yet."""
        first = self.models.first()
        if first is None:
            raise engine_unavailable("The inference engine is not available: no model loaded yet")
        return first if name is None else self.models.require(name)


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway
