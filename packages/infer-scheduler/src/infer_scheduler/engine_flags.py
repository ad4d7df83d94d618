"""The engine process's flags: `infer-scheduler --help` (defaults from the environment)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from infer_protocol.defaults import (
    DEFAULT_ENDPOINT,
    ENDPOINT_ENV,
    LOG_LEVELS,
    endpoint_from_env,
)


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The infer-scheduler argument parser; defaults come from `env` (default os.environ)."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="infer-scheduler",
        description="The infer engine: serves a model over ZeroMQ with continuous batching.",
    )
    p.add_argument("--model", default="smollm2", help="smollm2, a .gguf file or a HF directory")
    p.add_argument(
        "--endpoint",
        default=endpoint_from_env(env, ENDPOINT_ENV[::-1]),
        help="ROUTER endpoint to bind, ipc:// or tcp:// (env ZMQ_ENDPOINT, else ENGINE_ENDPOINT; "
        f"default {DEFAULT_ENDPOINT})",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="auto: bfloat16 on CUDA and on CPUs with avx512_bf16/AMX, else float32",
    )
    p.add_argument(
        "--int8-max-batch",
        type=_rows_or_all,
        default="all",
        help="CPU bf16: int8 linears (int8 weights; int8 activations in two passes above 2 "
        "rows) for steps of at most this many tokens (all: every step; 0: off)",
    )
    p.add_argument(
        "--int4-decode",
        default="auto",
        choices=["auto", "on", "off"],
        help="CPU bf16 with int8 on: int4 weights (groups of 32, GGUF Q4_1's grid) for decode "
        "steps of 1-2 sequences; auto: on when the checkpoint's linears are Q4_1 already",
    )
    p.add_argument(
        "--float32-min-batch",
        type=int,
        default=64,
        help="CPU bf16: float32 GEMMs (faster than bf16 here) for steps of at least this many "
        "tokens, i.e. prefill (0: off)",
    )
    p.add_argument(
        "--compile",
        default="off",
        choices=["off", "auto", "on"],
        help="CPU: torch.compile'd decode steps per batch bucket (auto: compiled in the "
        "background while eager serves; on: before serving)",
    )
    p.add_argument(
        "--compile-buckets",
        type=batch_sizes,
        default="1,4,8",
        help="CPU --compile: decode batch sizes to compile (a batch pads up to a bucket)",
    )
    p.add_argument(
        "--enforce-eager",
        action="store_true",
        help="CUDA: run decode steps eagerly instead of replaying captured CUDA graphs",
    )
    p.add_argument(
        "--served-model-name",
        action="append",
        default=[],
        help="extra name the model answers to (repeatable)",
    )
    p.add_argument(
        "--engine-id",
        default=env.get("ENGINE_ID") or "",
        help="this engine's id in a gateway's pool (ENGINE_ID; default: host name and a hash "
        "of the endpoint, stable across restarts)",
    )
    p.add_argument("--kv-cache-tokens", type=int, default=None, help="KV cache capacity in tokens")
    p.add_argument(
        "--memory-headroom-gb",
        type=float,
        default=2.0,
        help="CPU without --kv-cache-tokens: RAM (GiB) left free; the KV cache takes the "
        "available RAM after the weights minus this, up to 131072 tokens",
    )
    p.add_argument(
        "--kv-cache-dtype",
        default="auto",
        help="auto (the model's dtype), bf16 or float32 (must equal the model's dtype), or "
        "int8 (CPU: int8 K/V with a scale per token and kv head, ~half "
        "the bytes of bf16, so the same memory holds ~2x the tokens)",
    )
    p.add_argument(
        "--quantize",
        default=None,
        choices=["int8", "int4"],
        help="CPU, HF bf16/fp16/fp32 checkpoints: hold every linear as int8 or int4 groups of "
        "32 (weight-only, one copy); refused for GGUF files and quantized checkpoints",
    )
    p.add_argument(
        "--gguf-weights",
        default="auto",
        choices=["auto", "kernel", "dequantize"],
        help="CPU bf16: kernel: a GGUF's matrices stay in their kernel formats (one copy); "
        "dequantize: dense weights (then int8 / int4 copies as configured); auto: kernel when "
        "the dense weights would take a quarter of the available RAM or more",
    )
    p.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.9,
        help="fraction of GPU memory for weights + KV cache (CUDA, without --kv-cache-tokens)",
    )
    p.add_argument("--block-size", type=int, default=16, help="tokens per KV block")
    p.add_argument(
        "--max-batch-tokens",
        type=int,
        default=None,
        help="tokens fed per step (default 512 on CPU, 8192 on CUDA)",
    )
    p.add_argument("--max-running", type=int, default=64, help="most requests running at once")
    p.add_argument("--queue-capacity", type=int, default=100, help="most waiting requests")
    p.add_argument("--no-prefix-cache", action="store_true", help="turn the radix prefix cache off")
    p.add_argument("--seed", type=int, default=None, help="seed for unseeded sampling")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    p.add_argument(
        "--curve-secret-key",
        default=env.get("CURVE_SECRET_KEY_FILE") or None,
        metavar="FILE",
        help="CurveZMQ: this engine's .key_secret file from `infer keys` (CURVE_SECRET_KEY_FILE; "
        "or the Z85 key itself in CURVE_SECRET_KEY); gateways then need an allowed key",
    )
    p.add_argument(
        "--curve-clients",
        default=env.get("CURVE_CLIENTS_DIR") or None,
        metavar="DIR",
        help="CurveZMQ: directory of the allowed gateways' public .key files, re-read at each "
        "connection (CURVE_CLIENTS_DIR; or Z85 keys, comma separated, in CURVE_CLIENT_KEYS)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a plaintext tcp:// endpoint on a non-loopback address (a private network)",
    )
    p.add_argument(
        "--log-level",
        default=(env.get("LOG_LEVEL") or "info").lower(),
        choices=LOG_LEVELS,
        type=str.lower,
        help="log level (LOG_LEVEL); warn means warning, trace debug",
    )
    return p


def _rows_or_all(text: str) -> int:
    """argparse type: `all` (sys.maxsize: every step) or a row count >= 0."""
    if text == "all":
        return sys.maxsize
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or 'all': {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value}")
    return value


def batch_sizes(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated batch sizes >= 1, e.g. 1,4,8 -> (1, 4, 8)."""
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of batch sizes: {text!r}") from None
    if sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes
