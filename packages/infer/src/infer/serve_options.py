"""The options of `infer serve` and how they map onto its two child processes.

Invariant: every option in PASSTHROUGH names a flag that the target process's
own argparse parser accepts (tests/launcher checks this against `--help`).
An option left at its default (None/False) is not passed, so the child's own
default applies. The API key is never a flag: it reaches the gateway in its
environment (API_KEY), since any local user can read a command line.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from infer_protocol.defaults import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    LOG_LEVELS,
    SHUTDOWN_TIMEOUT_S,
    int_at_least,
    non_negative_int,
    port_number,
    positive_int,
)
from infer_scheduler.engine_flags import batch_sizes as engine_batch_sizes

ENGINE = "engine"
GATEWAY = "gateway"
DEFAULT_MODEL = "smollm2"


@dataclass(frozen=True)
class Passthrough:
    """One `infer serve` option forwarded as `flag` to the processes in `targets`.

    kind: "value" (one value), "flag" (store_true), "append" (repeatable
    flag, one value each time), "list" (one flag followed by all values).
    """

    dest: str
    flag: str
    targets: tuple[str, ...]
    kind: str = "value"


PASSTHROUGH: tuple[Passthrough, ...] = (
    Passthrough("device", "--device", (ENGINE,)),
    Passthrough("dtype", "--dtype", (ENGINE,)),
    Passthrough("int8_max_batch", "--int8-max-batch", (ENGINE,)),
    Passthrough("int4_decode", "--int4-decode", (ENGINE,)),
    Passthrough("float32_min_batch", "--float32-min-batch", (ENGINE,)),
    Passthrough("compile", "--compile", (ENGINE,)),
    Passthrough("compile_buckets", "--compile-buckets", (ENGINE,)),
    Passthrough("enforce_eager", "--enforce-eager", (ENGINE,), "flag"),
    Passthrough("kv_cache_tokens", "--kv-cache-tokens", (ENGINE,)),
    Passthrough("gpu_memory_utilization", "--gpu-memory-utilization", (ENGINE,)),
    Passthrough("memory_headroom_gb", "--memory-headroom-gb", (ENGINE,)),
    Passthrough("kv_cache_dtype", "--kv-cache-dtype", (ENGINE,)),
    Passthrough("gguf_weights", "--gguf-weights", (ENGINE,)),
    Passthrough("quantize", "--quantize", (ENGINE,)),
    Passthrough("block_size", "--block-size", (ENGINE,)),
    Passthrough("max_running", "--max-running", (ENGINE,)),
    Passthrough("max_batch_tokens", "--max-batch-tokens", (ENGINE,)),
    Passthrough("queue_capacity", "--queue-capacity", (ENGINE,)),
    Passthrough("no_prefix_cache", "--no-prefix-cache", (ENGINE,), "flag"),
    Passthrough("seed", "--seed", (ENGINE,)),
    Passthrough("threads", "--threads", (ENGINE,)),
    Passthrough("served_model_name", "--served-model-name", (ENGINE,), "append"),
    Passthrough("request_timeout", "--request-timeout", (GATEWAY,)),
    Passthrough("engine_ping_timeout", "--engine-ping-timeout", (GATEWAY,)),
    Passthrough("chat_template", "--chat-template", (GATEWAY,)),
    Passthrough("tool_call_parser", "--tool-call-parser", (GATEWAY,)),
    Passthrough("cors_origins", "--cors-origins", (GATEWAY,), "list"),
    Passthrough("max_body_bytes", "--max-body-bytes", (GATEWAY,)),
    Passthrough("rate_limit", "--rate-limit", (GATEWAY,)),
    Passthrough("shutdown_timeout", "--shutdown-timeout", (GATEWAY,)),
    Passthrough("log_level", "--log-level", (ENGINE, GATEWAY)),
)


def rows_or_all(text: str) -> str:
    """argparse type: `all` or an integer >= 0 (passed on to the engine as written)."""
    return "all" if text == "all" else str(int_at_least(text, 0))


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def batch_sizes(text: str) -> str:
    """argparse type: the engine's `--compile-buckets` check, normalized back to text
    for its command line (e.g. "8,1,4" -> "1,4,8")."""
    return ",".join(map(str, engine_batch_sizes(text)))


def device_name(text: str) -> str:
    """argparse type: auto, cpu, cuda or cuda:N."""
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        return text
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    """Declare the options of `infer serve` on `parser`."""
    main = parser.add_argument_group("serving")
    main.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="'smollm2' (the default SmolLM2-135M-Instruct GGUF) or a path to a "
        ".gguf file or a Hugging Face model directory",
    )
    main.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address the HTTP server binds (default {DEFAULT_HOST}; 0.0.0.0 for all)",
    )
    main.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})"
    )
    main.add_argument(
        "--api-key",
        default=env.get("API_KEY") or None,
        help="require 'Authorization: Bearer KEY' (env API_KEY)",
    )
    main.add_argument(
        "--ready-timeout",
        type=positive_float,
        default=600.0,
        help="seconds to wait for the model to load before giving up (default 600)",
    )
    main.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=None,
        help="log level of both (default: theirs, info or LOG_LEVEL)",
    )

    main.add_argument(
        "--engines",
        type=positive_int,
        default=1,
        help="engine processes behind the one gateway (default 1): CPU threads split between "
        "them, or one GPU each",
    )

    engine = parser.add_argument_group("engine (infer-scheduler)")
    engine.add_argument(
        "--device",
        type=device_name,
        default=None,
        help="auto (CUDA when present), cpu, cuda or cuda:N",
    )
    engine.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default=None,
        help="weights and KV cache dtype (auto: bfloat16 on CUDA and on CPUs with "
        "avx512_bf16/AMX, else float32)",
    )
    engine.add_argument(
        "--int8-max-batch",
        type=rows_or_all,
        default=None,
        help="CPU bfloat16: int8 linears for steps of at most this many tokens "
        "(default all; 0: off)",
    )
    engine.add_argument(
        "--int4-decode",
        choices=("auto", "on", "off"),
        default=None,
        help="CPU bfloat16: int4 weights for decode steps of 1-2 sequences (default auto: on "
        "when the checkpoint's linears are Q4_1, like the default model)",
    )
    engine.add_argument(
        "--float32-min-batch",
        type=non_negative_int,
        default=None,
        help="CPU bfloat16: float32 GEMMs for steps of at least this many tokens, i.e. prefill "
        "(0: off; default 64)",
    )
    engine.add_argument(
        "--compile",
        choices=("off", "auto", "on"),
        default=None,
        help="CPU: torch.compile'd decode steps per batch bucket (auto: compiled in the "
        "background while eager serves; on: before serving; default off)",
    )
    engine.add_argument(
        "--compile-buckets",
        type=batch_sizes,
        default=None,
        help="CPU --compile: decode batch sizes to compile, e.g. 1,4,8 (batches pad up)",
    )
    engine.add_argument(
        "--enforce-eager",
        action="store_true",
        default=False,
        help="CUDA: decode steps run eagerly instead of replaying captured CUDA graphs",
    )
    engine.add_argument(
        "--kv-cache-tokens", type=positive_int, default=None, help="KV cache capacity in tokens"
    )
    engine.add_argument(
        "--memory-headroom-gb",
        type=float,
        default=None,
        help="CPU without --kv-cache-tokens: RAM (GiB) left free beside the KV cache (default 2)",
    )
    engine.add_argument(
        "--kv-cache-dtype",
        choices=["auto", "bf16", "bfloat16", "float32", "int8"],
        default=None,
        help="auto (the model's dtype), the model's dtype by name, or int8 (CPU: ~half the "
        "bytes of bf16 per token)",
    )
    engine.add_argument(
        "--quantize",
        choices=["int8", "int4"],
        default=None,
        help="CPU, HF checkpoints: linears held as int8 / int4 groups (one copy)",
    )
    engine.add_argument(
        "--gguf-weights",
        choices=["auto", "kernel", "dequantize"],
        default=None,
        help="CPU bf16: kernel: GGUF matrices stay in kernel formats (one copy); dequantize: "
        "dense; auto: kernel when dense weights would take >= 1/4 of the available RAM",
    )
    engine.add_argument(
        "--gpu-memory-utilization",
        type=fraction,
        default=None,
        help="fraction of GPU memory for weights + KV cache (CUDA only)",
    )
    engine.add_argument(
        "--block-size", type=positive_int, default=None, help="tokens per KV cache block"
    )
    engine.add_argument(
        "--max-running", type=positive_int, default=None, help="most requests in a batch"
    )
    engine.add_argument(
        "--max-batch-tokens", type=positive_int, default=None, help="token budget per step"
    )
    engine.add_argument(
        "--queue-capacity",
        type=positive_int,
        default=None,
        help="waiting requests before new ones are refused (overloaded)",
    )
    engine.add_argument(
        "--no-prefix-cache",
        action="store_true",
        default=False,
        help="turn the radix prefix cache off",
    )
    engine.add_argument("--seed", type=int, default=None, help="engine random seed")
    engine.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    engine.add_argument(
        "--served-model-name",
        action="append",
        default=None,
        metavar="NAME",
        help="extra model name to answer to (repeatable)",
    )

    gateway = parser.add_argument_group("gateway (infer-server)")
    gateway.add_argument(
        "--request-timeout",
        type=positive_float,
        default=None,
        help="seconds without engine progress before 504",
    )
    gateway.add_argument(
        "--rate-limit",
        type=positive_int,
        default=None,
        metavar="PER_MINUTE",
        help="requests per minute per API key (or per client address without a key)",
    )
    gateway.add_argument(
        "--shutdown-timeout",
        type=positive_float,
        default=SHUTDOWN_TIMEOUT_S,
        help=f"seconds in-flight requests may take to finish on Ctrl-C/SIGTERM (default "
        f"{SHUTDOWN_TIMEOUT_S:g}); the launcher stops everything within this plus 3 s",
    )
    gateway.add_argument(
        "--engine-ping-timeout",
        type=positive_float,
        default=None,
        help="seconds without an engine heartbeat before it counts as down",
    )
    gateway.add_argument(
        "--chat-template",
        default=None,
        metavar="FILE",
        help="Jinja2 chat template overriding the model's",
    )
    gateway.add_argument(
        "--tool-call-parser",
        choices=("auto", "hermes", "llama3_json", "mistral"),
        default=None,
        help="format of the model's tool calls (default auto: chosen from the chat template)",
    )
    gateway.add_argument(
        "--cors-origins",
        nargs="+",
        default=None,
        metavar="ORIGIN",
        help="allowed CORS origins (default any)",
    )
    gateway.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=None,
        help="largest request body (413 beyond)",
    )


def _emit(option: Passthrough, value: Any) -> list[str]:
    if value is None or value is False:
        return []
    if option.kind == "flag":
        return [option.flag]
    if option.kind == "append":
        return [part for item in value for part in (option.flag, str(item))]
    if option.kind == "list":
        return [option.flag, *map(str, value)]
    return [option.flag, str(value)]


def child_args(args: argparse.Namespace, target: str) -> list[str]:
    """The pass-through flags of `target` (ENGINE or GATEWAY) set in `args`."""
    out: list[str] = []
    for option in PASSTHROUGH:
        if target in option.targets:
            out += _emit(option, getattr(args, option.dest, None))
    return out


def engine_args(args: argparse.Namespace, endpoint: str) -> list[str]:
    """Command-line arguments of infer-scheduler."""
    return ["--model", args.model, "--endpoint", endpoint, *child_args(args, ENGINE)]


def gateway_args(args: argparse.Namespace, endpoints: str | Sequence[str]) -> list[str]:
    """Command-line arguments of infer-server (one --engine-endpoint per engine)."""
    listed = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    return [
        "--host",
        args.host,
        "--port",
        str(args.port),
        *(part for endpoint in listed for part in ("--engine-endpoint", endpoint)),
        *child_args(args, GATEWAY),
    ]


def flags_of(target: str) -> Iterable[str]:
    """Every flag `infer serve` passes to `target`, fixed ones included."""
    fixed = {ENGINE: ("--model", "--endpoint"), GATEWAY: ("--host", "--port", "--engine-endpoint")}
    yield from fixed[target]
    for option in PASSTHROUGH:
        if target in option.targets:
            yield option.flag
