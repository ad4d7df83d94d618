"""The gateway's engines: one EngineClient (one DEALER) per `--engine-endpoint`.

Each `PooledEngine` has a state:
- `ready`: its ModelInfo is accepted and, after it was down once, it has
  answered `REJOIN_PONGS` pings since it came back (hysteresis: a flapping
  engine does not take traffic on its first sign of life); it takes new
  requests for the model names it serves;
- `not_ready`: not contacted yet, loading its model info, speaking another
  protocol version, refused (a duplicate engine id, or another tokenizer
  under a name a live engine already serves), rejoining, or hung;
- `dead`: its connection is lost (the process exited or stopped answering
  ZMTP heartbeats); its open requests were failed at once.

Invariants: the router only ever sees ready engines that serve the model;
`router.forget(engine_id)` is called when an engine goes down and when it
reports a new epoch (it restarted with an empty KV cache); an epoch change
seen without a lost connection fails the engine's open requests too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence

from infer_protocol import ModelInfo, Pong
from infer_protocol.curve import ClientKeys

from .engine_client import EngineClient
from .errors import APIError, engine_unavailable
from .routing import EngineLoad, Router
from .served_models import ModelConflict, ServedModels

log = logging.getLogger("infer_server.pool")
REJOIN_PONGS = 2


class PooledEngine:
    """One engine as the gateway sees it: its client, identity, models and load."""

    def __init__(self, endpoint: str, client: EngineClient) -> None:
        self.endpoint = endpoint
        self.client = client
        self.reported_id = ""  # from its Pongs; `engine_id` falls back to the endpoint
        self.epoch = ""
        self.waiting = 0
        self.running = 0
        self.kv_use = 0.0
        self.routed = 0  # requests the router sent here (resubmissions included)
        self.failed_over = 0  # requests moved away from it when it died before streaming
        self.names: tuple[str, ...] = ()
        self.refused: str | None = None
        self.rejoin_left = 0
        self.ever_up = False

    @property
    def engine_id(self) -> str:
        return self.reported_id or self.endpoint

    @property
    def state(self) -> str:
        if self.client.connected and self.rejoin_left == 0 and self.refused is None:
            return "ready"
        if self.ever_up and not self.client.link_up:
            return "dead"
        return "not_ready"

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def problem(self) -> str:
        """Why it is not ready (its last error), for /ready and errors."""
        if self.refused:
            return self.refused
        if self.client.connected and self.rejoin_left:
            return "engine rejoining (waiting for its pings)"
        return self.client.last_error or "engine not connected"

    def load(self) -> EngineLoad:
        return EngineLoad(
            self.engine_id, self.client.in_flight, self.waiting, self.running, self.kv_use
        )


class PoolGate:
    """Shut (503 at the door) only while every ready engine's gate is shut."""

    def __init__(self, engines: Sequence[PooledEngine]) -> None:
        self._engines = engines

    @property
    def shut(self) -> bool:
        ready = [e for e in self._engines if e.ready]
        return bool(ready) and all(e.client.gate.shut for e in ready)


class EnginePool:
    """The engines behind one gateway, their served models, and request routing."""

    def __init__(
        self,
        endpoints: Sequence[str],
        router: Router,
        models: ServedModels,
        *,
        ping_interval: float,
        dead_after: float,
        hang_after: float,
        on_model: Callable[[ModelInfo], None] = lambda info: None,
        curve: ClientKeys | None = None,
    ) -> None:
        self.router = router
        self.models = models
        self._on_model = on_model
        self.engines: list[PooledEngine] = []
        for endpoint in endpoints:
            client = EngineClient(
                endpoint,
                ping_interval=ping_interval,
                dead_after=dead_after,
                hang_after=hang_after,
                curve=curve,
            )
            engine = PooledEngine(endpoint, client)
            client.set_hooks(
                on_model_info=lambda info, e=engine: self._model_info(e, info),
                on_pong=lambda pong, e=engine: self._pong(e, pong),
                on_down=lambda reason, e=engine: self._down(e, reason),
            )
            self.engines.append(engine)
        self.gate = PoolGate(self.engines)

    async def start(self) -> None:
        for engine in self.engines:
            await engine.client.start()

    async def close(self) -> None:
        for engine in self.engines:
            with contextlib.suppress(Exception):
                await engine.client.close()

    # ------------------------------------------------------------- hooks

    def _pong(self, engine: PooledEngine, pong: Pong) -> None:
        if engine.epoch and pong.epoch != engine.epoch:
            log.warning("engine %s at %s restarted (new epoch)", engine.engine_id, engine.endpoint)
            self.router.forget(engine.engine_id)
            engine.rejoin_left = REJOIN_PONGS
            if engine.client.connected:
                engine.client.mark_down("engine restarted (new epoch): its requests are lost")
        engine.epoch = pong.epoch
        engine.waiting, engine.running, engine.kv_use = pong.waiting, pong.running, pong.kv_use
        if pong.engine_id != engine.reported_id:
            engine.reported_id = pong.engine_id
            twin = next(
                (o for o in self.engines if o is not engine and o.engine_id == pong.engine_id), None
            )
            engine.refused = (
                f"engine id '{pong.engine_id}' is also the id of the engine at {twin.endpoint}; "
                "give each engine its own --engine-id"
                if twin is not None
                else None
            )
            if engine.refused:
                log.error("engine at %s refused: %s", engine.endpoint, engine.refused)
        if engine.rejoin_left and engine.client.connected:
            engine.rejoin_left -= 1
            if not engine.rejoin_left:
                log.info("engine %s at %s rejoined", engine.engine_id, engine.endpoint)

    def _down(self, engine: PooledEngine, reason: str) -> None:
        self.router.forget(engine.engine_id)
        engine.rejoin_left = REJOIN_PONGS

    def _model_info(self, engine: PooledEngine, info: ModelInfo) -> None:
        """Accept an engine's model (raises to leave it not connected)."""
        if engine.refused:
            raise ModelConflict(engine.refused)
        try:
            model = self.models.accept(
                info,
                lambda name: any(
                    o is not engine and o.ready and name in o.names for o in self.engines
                ),
            )
        except ModelConflict as exc:
            if engine.client.last_error != f"loading model info failed: {exc}":
                log.error("engine at %s: %s", engine.endpoint, exc)
            raise
        engine.names = tuple(model.names)
        engine.ever_up = True
        self._on_model(info)

    # ------------------------------------------------------------- queries

    def serving(self, name: str, exclude: Iterable[PooledEngine] = ()) -> list[PooledEngine]:
        """Ready engines that serve `name`, minus `exclude`."""
        skip = set(map(id, exclude))
        return [e for e in self.engines if e.ready and name in e.names and id(e) not in skip]

    def route(
        self, name: str, token_ids: Sequence[int], exclude: Iterable[PooledEngine] = ()
    ) -> PooledEngine:
        """The engine for a request (counted as routed there), or the APIError saying why
        none: 502 when no engine at all is ready (as with a single engine that is down),
        503 `model_unavailable` when others are ready but none serves `name`."""
        exclude = list(exclude)
        candidates = self.serving(name, exclude)
        if not candidates:
            raise self.unavailable(name, exclude)
        by_id = {e.engine_id: e for e in candidates}
        chosen = by_id.get(self.router.choose(name, token_ids, [e.load() for e in candidates]))
        engine = chosen or candidates[0]
        engine.routed += 1
        return engine

    def unavailable(self, name: str, exclude: Sequence[PooledEngine] = ()) -> APIError:
        if not any(e.ready for e in self.engines):
            return engine_unavailable(f"The inference engine is not available: {self.problem()}")
        return APIError(
            503,
            f"The model '{name}' is served by no ready engine right now; retry later",
            code="model_unavailable",
            headers={"Retry-After": "1"},
        )

    def ready(self) -> bool:
        """Every known model name has at least one ready engine (and one name is known)."""
        names = self.models.names
        return bool(names) and all(self.serving(name) for name in names)

    def problem(self) -> str:
        """Why the pool is not (fully) ready: the errors of the engines that are not."""
        down = [e for e in self.engines if not e.ready] or self.engines
        if len(self.engines) == 1:
            return down[0].problem
        return "; ".join(f"engine at {e.endpoint}: {e.problem}" for e in down)

    @property
    def any_ready(self) -> bool:
        return any(e.ready for e in self.engines)
