"""`infer-server`: run the gateway on Hypercorn."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from hypercorn.asyncio import serve
from hypercorn.config import Config

from .app import create_app
from .config import Settings, parse_settings
from .templates import TemplateError

_LEVELS = {"trace": logging.DEBUG}


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=_LEVELS.get(level, getattr(logging, level.upper(), logging.INFO)),
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
    config.loglevel = settings.log_level.upper() if settings.log_level != "trace" else "DEBUG"
    config.graceful_timeout = settings.shutdown_timeout  # in-flight requests may finish
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(settings)
    logging.getLogger("infer_server").info(
        "infer-server listening on %s:%s, engine %s",
        settings.host,
        settings.port,
        settings.engine_endpoint,
    )
    await serve(app, config, shutdown_trigger=stop.wait)


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
