"""Gateway settings from command-line flags with environment fallbacks.

Precedence: flag > environment variable > default. `Settings` is frozen;
the app never reads the environment after it is built.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from infer_protocol.curve import ClientKeys, CurveError, client_keys, plaintext_refusal
from infer_protocol.defaults import (
    DEFAULT_ENDPOINT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    LOG_LEVELS,
    SHUTDOWN_TIMEOUT_S,
    endpoint_from_env,
    endpoint_list,
    port_number,
    positive_int,
)
from infer_server.radix_router import (
    DEFAULT_BALANCE_ABS,
    DEFAULT_BALANCE_REL,
    DEFAULT_CACHE_THRESHOLD,
    DEFAULT_MAX_TREE_TOKENS,
)
from infer_server.routing_flags import add_routing_thresholds

from .routing import make_router

DEFAULT_ROUTING = "cache_aware"


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs to run; see the package README for flags."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    engine_endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    routing: str = DEFAULT_ROUTING
    log_level: str = "info"
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ("*",)
    request_timeout: float = 30.0
    max_body_bytes: int = 4 * 1024 * 1024
    served_model_names: tuple[str, ...] = ()
    chat_template_file: str | None = None
    tool_call_parser: str = "auto"  # "auto": from the chat template; else a tool_parsers name
    ping_interval: float = 0.5
    engine_dead_after: float = 3.0
    shutdown_timeout: float = SHUTDOWN_TIMEOUT_S
    rate_limit: int | None = None
    routing_cache_threshold: float = DEFAULT_CACHE_THRESHOLD
    routing_balance_abs: int = DEFAULT_BALANCE_ABS
    routing_balance_rel: float = DEFAULT_BALANCE_REL
    routing_max_tree_tokens: int = DEFAULT_MAX_TREE_TOKENS
    curve: ClientKeys | None = None  # CurveZMQ keys for the engine link; None: plaintext

    @property
    def router_options(self) -> dict[str, float]:
        """The thresholds of `cache_aware` routing, as `routing.make_router` takes them."""
        return {
            "cache_threshold": self.routing_cache_threshold,
            "balance_abs": self.routing_balance_abs,
            "balance_rel": self.routing_balance_rel,
            "max_tree_tokens": self.routing_max_tree_tokens,
        }

    @property
    def engine_endpoint(self) -> str:
        """The first engine endpoint (the only one in a single-engine set-up)."""
        return self.engine_endpoints[0]


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The infer-server argument parser; defaults come from `env`."""
    p = argparse.ArgumentParser(
        prog="infer-server", description="OpenAI-compatible gateway in front of infer-scheduler."
    )
    p.add_argument(
        "--host",
        default=env.get("HOST") or DEFAULT_HOST,
        help=f"bind address (HOST; default {DEFAULT_HOST}, 0.0.0.0 for every interface)",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=env.get("PORT") or str(DEFAULT_PORT),
        help=f"bind port (PORT; default {DEFAULT_PORT})",
    )
    p.add_argument(
        "--engine-endpoint",
        action="append",
        default=None,
        help=f"ZeroMQ endpoint of an engine; repeat it (or give a comma list) for several "
        f"engines (ENGINE_ENDPOINT, a comma list, else ZMQ_ENDPOINT; default {DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--routing",
        default=env.get("ROUTING") or DEFAULT_ROUTING,
        help=f"which engine a request goes to: cache_aware, least_loaded or round_robin "
        f"(ROUTING; default {DEFAULT_ROUTING})",
    )
    p.add_argument(
        "--curve-secret-key",
        default=env.get("CURVE_SECRET_KEY_FILE") or None,
        metavar="FILE",
        help="CurveZMQ: this gateway's .key_secret file from `infer keys` (CURVE_SECRET_KEY_FILE; "
        "or the Z85 key itself in CURVE_SECRET_KEY)",
    )
    p.add_argument(
        "--curve-server-key",
        default=env.get("CURVE_SERVER_KEY_FILE") or None,
        metavar="FILE",
        help="CurveZMQ: the engine's public .key file (CURVE_SERVER_KEY_FILE; or the Z85 key "
        "itself in CURVE_SERVER_KEY)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a plaintext tcp:// engine endpoint on a non-loopback address",
    )
    p.add_argument(
        "--log-level",
        default=(env.get("LOG_LEVEL") or "info").lower(),
        type=str.lower,
        choices=LOG_LEVELS,
        help="log level (LOG_LEVEL)",
    )
    p.add_argument(
        "--api-key", default=env.get("API_KEY") or None, help="require this Bearer key (API_KEY)"
    )
    p.add_argument(
        "--cors-origins",
        nargs="+",
        default=None,
        help="allowed CORS origins (CORS_ORIGINS, comma separated); default any origin",
    )
    p.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=env.get("REQUEST_TIMEOUT", "30"),
        help="seconds without engine progress before 504 (REQUEST_TIMEOUT)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=env.get("MAX_BODY_BYTES", str(4 * 1024 * 1024)),
        help="largest accepted request body (MAX_BODY_BYTES)",
    )
    p.add_argument(
        "--served-model-name",
        action="append",
        default=[],
        help="extra model name to answer to (repeatable)",
    )
    p.add_argument(
        "--engine-ping-timeout",
        type=_positive_float,
        default=env.get("ENGINE_PING_TIMEOUT", "3"),
        help="seconds without a heartbeat before the engine counts as down (ENGINE_PING_TIMEOUT)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=_positive_float,
        default=env.get("SHUTDOWN_TIMEOUT") or str(SHUTDOWN_TIMEOUT_S),
        help="on SIGTERM, seconds to let in-flight requests finish (SHUTDOWN_TIMEOUT)",
    )
    p.add_argument(
        "--rate-limit",
        type=positive_int,
        default=env.get("RATE_LIMIT") or None,
        help="requests per minute per API key, or per client address without keys (RATE_LIMIT)",
    )
    p.add_argument(
        "--chat-template", default=None, help="Jinja chat template file overriding the model's"
    )
    p.add_argument(
        "--tool-call-parser",
        choices=("auto", "hermes", "llama3_json", "mistral"),
        default="auto",
        help="format of the model's tool calls (auto: chosen from the chat template)",
    )
    add_routing_thresholds(p, env)
    return p


def parse_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Parse flags (argv) with fallbacks from env (default os.environ)."""
    env = os.environ if env is None else env
    parser = build_parser(env)
    args = parser.parse_args(argv)
    if args.log_level not in LOG_LEVELS:  # argparse checks choices of flags, not of defaults
        parser.error(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {args.log_level!r}")
    if args.cors_origins is not None:
        origins = tuple(args.cors_origins)
    elif env.get("CORS_ORIGINS"):
        origins = tuple(o.strip() for o in env["CORS_ORIGINS"].split(",") if o.strip())
    else:
        origins = ("*",)
    try:
        curve = client_keys(args.curve_secret_key, args.curve_server_key, env)
    except CurveError as exc:
        parser.error(str(exc))
    level = "warning" if args.log_level == "warn" else args.log_level
    try:
        endpoints = endpoint_list(args.engine_endpoint or endpoint_from_env(env))
        make_router(args.routing)
    except ValueError as exc:
        parser.error(str(exc))
    if not endpoints:
        parser.error("--engine-endpoint is empty")
    refusal = plaintext_refusal(
        endpoints, curve is not None, args.insecure, "--curve-secret-key and --curve-server-key"
    )
    if refusal:
        parser.error(refusal)
    return Settings(
        host=args.host,
        port=int(args.port),
        engine_endpoints=tuple(endpoints),
        routing=args.routing,
        log_level=level,
        api_key=args.api_key,
        cors_origins=origins,
        request_timeout=float(args.request_timeout),
        max_body_bytes=int(args.max_body_bytes),
        served_model_names=tuple(args.served_model_name),
        chat_template_file=args.chat_template,
        tool_call_parser=args.tool_call_parser,
        engine_dead_after=float(args.engine_ping_timeout),
        ping_interval=min(0.5, float(args.engine_ping_timeout) / 3),
        shutdown_timeout=float(args.shutdown_timeout),
        rate_limit=int(args.rate_limit) if args.rate_limit else None,
        routing_cache_threshold=float(args.routing_cache_threshold),
        routing_balance_abs=int(args.routing_balance_abs),
        routing_balance_rel=float(args.routing_balance_rel),
        routing_max_tree_tokens=int(args.routing_max_tree_tokens),
        curve=curve,
    )
