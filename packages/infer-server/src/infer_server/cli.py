"""`infer-server`: run the gateway on Hypercorn."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette

from infer_protocol.defaults import exposure_warning, log_level_name

from .app import create_app
from .config import Settings, parse_settings
from .templates import TemplateError

GRACE_AFTER_DRAIN_S = 1.0
log = logging.getLogger("infer_server")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=log_level_name(level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM."""
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.loglevel = log_level_name(settings.log_level)
    # the drain below lets in-flight requests finish; Hypercorn then only cancels leftovers
    config.graceful_timeout = GRACE_AFTER_DRAIN_S
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    app = create_app(settings)
    warning = exposure_warning(settings.host, settings.api_key)
    if warning:
        log.warning("%s", warning)
    log.info(
        "infer-server listening on %s:%s, engine %s",
        settings.host,
        settings.port,
        settings.engine_endpoint,
    )
    await serve(app, config, shutdown_trigger=partial(drain, app, settings, signalled))


async def drain(app: Starlette, settings: Settings, signalled: asyncio.Event) -> None:
    """Return (so Hypercorn closes) once a signal came and the drain ended: every
    request admitted before it finished, `--shutdown-timeout` passed, or a second
    signal came. New requests get 503 meanwhile (see drain.DrainMiddleware)."""
    await signalled.wait()
    signalled.clear()
    state = app.state.gateway.drain
    state.begin()
    log.info(
        "draining: %d requests in flight, new ones get 503 (up to %gs)",
        state.active,
        settings.shutdown_timeout,
    )
    waits = [asyncio.ensure_future(state.idle()), asyncio.ensure_future(signalled.wait())]
    try:
        await asyncio.wait(
            waits, timeout=settings.shutdown_timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in waits:
            task.cancel()
    if state.active:
        log.warning("shutting down with %d requests unfinished", state.active)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    configure_logging(settings.log_level)
    try:
        asyncio.run(run(settings))
    except (OSError, TemplateError) as exc:
        logging.getLogger("infer_server").error("cannot serve: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
