"""Defaults shared by the three command lines (`infer serve`, `infer-server`,
`infer-scheduler`), written once so they cannot disagree.

The gateway reads its engine endpoint from ENGINE_ENDPOINT (the seed's
name) and the engine its bind endpoint from ZMQ_ENDPOINT; each accepts the
other's name as a fallback, so one variable configures both ends.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

DEFAULT_ENDPOINT = "ipc:///tmp/rustinfer.ipc"
ENDPOINT_ENV = ("ENGINE_ENDPOINT", "ZMQ_ENDPOINT")  # the gateway's first; the engine reverses it
DEFAULT_HOST = "127.0.0.1"  # local only; 0.0.0.0 (or HOST) to listen on every interface
DEFAULT_PORT = 8000
SHUTDOWN_TIMEOUT_S = 30.0  # on SIGTERM, seconds in-flight requests may take to finish
# accepted by every --log-level / LOG_LEVEL (any case); "warn" means warning, "trace" debug
LOG_LEVELS = ("trace", "debug", "info", "warning", "warn", "error", "critical")
_LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def endpoint_from_env(env: Mapping[str, str], names: tuple[str, ...] = ENDPOINT_ENV) -> str:
    """The first non-empty endpoint variable of `names` in `env`, else DEFAULT_ENDPOINT."""
    for name in names:
        if env.get(name):
            return env[name]
    return DEFAULT_ENDPOINT


def endpoint_list(texts: list[str] | str) -> list[str]:
    """Engine endpoints from repeated flags and/or comma lists, in order, without blanks;
    ValueError naming an endpoint given twice."""
    items = [texts] if isinstance(texts, str) else texts
    out: list[str] = []
    for text in items:
        for part in text.split(","):
            endpoint = part.strip()
            if not endpoint:
                continue
            if endpoint in out:
                raise ValueError(f"engine endpoint {endpoint} is given twice")
            out.append(endpoint)
    return out


def port_number(text: str) -> int:
    """argparse type: a TCP port 1..65535 (0, "any free port", is refused: the URL must be known)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1..65535, got {value}")
    return value


def int_at_least(text: str, low: int) -> int:
    """argparse type body: an integer >= low, else a message naming the bound."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return int_at_least(text, 0)


def log_level_name(level: str) -> str:
    """A LOG_LEVELS word as the `logging` level name ("warn" -> "WARNING", "trace" -> "DEBUG")."""
    word = level.lower()
    if word not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return {"warn": "WARNING", "trace": "DEBUG"}.get(word, word.upper())


def is_loopback(host: str) -> bool:
    """True when `host` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to log when binding `host` without an API key exposes the API, else None."""
    if api_key or is_loopback(host):
        return None
    return (
        f"listening on {host or 'every interface'} without an API key: anyone who can reach "
        "this address can use the API (set --api-key or API_KEY, or bind 127.0.0.1)"
    )
