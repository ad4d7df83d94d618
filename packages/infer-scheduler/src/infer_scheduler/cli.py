"""Command line of the engine process: `infer-scheduler --model M --endpoint E`."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

from infer_protocol import ModelInfo
from infer_protocol.curve import CurveError, plaintext_refusal, server_keys
from infer_protocol.defaults import (
    DEFAULT_ENDPOINT,
    ENDPOINT_ENV,
    LOG_LEVELS,
    endpoint_from_env,
    log_level_name,
)

# OpenMP spin iterations before a worker thread sleeps (libgomp; ~0.1 ms)
DEFAULT_SPINCOUNT = "10000"
log = logging.getLogger("infer_scheduler")


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
        help="auto (the model's dtype), bf16 or float32 (must equal the model's dtype); "
        "int8 is refused (not implemented)",
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


def build_model_info(
    bundle: Any, names: list[str], tokenizer_json: str, request_id: str
) -> ModelInfo:
    """The ModelInfo answer for a loaded bundle (tokenizer JSON serialized once by the caller)."""
    config = bundle.config
    return ModelInfo(
        request_id=request_id,
        served_model_names=names,
        context_length=config.context_length,
        tokenizer_json=tokenizer_json,
        chat_template=bundle.chat_template,
        bos_token=config.bos_token,
        eos_token=config.eos_token,
        bos_token_id=config.bos_token_id,
        eos_token_ids=list(config.eos_token_ids),
        add_bos_token=config.add_bos_token,
        vocab_size=config.vocab_size,
        device=str(bundle.device),
        dtype=str(bundle.dtype).removeprefix("torch."),
    )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def kill_descendants() -> int:
    """SIGKILL every process this one started that still runs (the background C++
    kernel build's ninja and compilers), so nothing outlives the engine; returns how many."""
    import psutil

    try:
        left = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=2)
    return len(left)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level not in LOG_LEVELS:  # argparse checks choices of flags, not of defaults
        parser.error(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {args.log_level!r}")
    try:
        args.curve = server_keys(args.curve_secret_key, args.curve_clients, os.environ)
    except CurveError as exc:
        parser.error(str(exc))
    refusal = plaintext_refusal(
        args.endpoint,
        args.curve is not None,
        args.insecure,
        "--curve-secret-key and --curve-clients",
    )
    if refusal:
        parser.error(refusal)
    logging.basicConfig(
        level=log_level_name(args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # until the server takes over these signals, stop by unwinding (so `finally` runs)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        return _serve(args)
    finally:
        killed = kill_descendants()
        if killed:
            log.info("stopped %d leftover child processes (the kernel build)", killed)


def _serve(args: argparse.Namespace) -> int:
    # must be set before torch loads: OpenMP threads that spin forever collapse when cores
    # are shared, and ones that sleep at once cost ~50 us per parallel region (a batch-1
    # decode step 2x slower), so they spin briefly, then sleep
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", DEFAULT_SPINCOUNT)
    import torch

    from infer_worker import ModelLoadError

    from .engine import Engine
    from .loading import LoadOptions, load_for_serving
    from .options import EngineOptions

    try:
        options = EngineOptions(
            max_batch_tokens=args.max_batch_tokens,
            max_running=args.max_running,
            kv_cache_tokens=args.kv_cache_tokens,
            gpu_memory_utilization=args.gpu_memory_utilization,
            block_size=args.block_size,
            enable_prefix_cache=not args.no_prefix_cache,
            queue_capacity=args.queue_capacity,
            compile=args.compile,
            compile_buckets=args.compile_buckets,
            cuda_graphs=not args.enforce_eager,
            memory_headroom_gb=args.memory_headroom_gb,
            kv_cache_dtype=args.kv_cache_dtype,
        )
    except ValueError as exc:
        print(f"infer-scheduler: error: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None:
        torch.manual_seed(args.seed)
    if args.threads is not None:
        if args.threads < 1:
            print("infer-scheduler: error: --threads must be >= 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    try:
        load = LoadOptions(
            device=args.device,
            dtype=args.dtype,
            gguf_weights=args.gguf_weights,
            quantize=args.quantize,
            int8_max_batch=None if args.int8_max_batch == sys.maxsize else args.int8_max_batch,
            float32_min_batch=args.float32_min_batch,
            int4_decode=args.int4_decode,
        )
    except ValueError as exc:
        print(f"infer-scheduler: error: {exc}", file=sys.stderr)
        return 2
    try:
        bundle, fast = load_for_serving(args.model, load)
    except ModelLoadError as exc:
        log.error("could not load model: %s", exc)
        return 1
    if fast:
        log.info("CPU fast paths: %s", ", ".join(fast))
    try:
        engine = Engine(bundle, options)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    # import xgrammar, build its tokenizer table off the step loop; joined before returning:
    # exiting while that thread is inside xgrammar's C++ aborts the process
    warm_up = engine.grammars.warm_up()
    try:
        return _run(args, bundle, engine, started, options)
    finally:
        warm_up.join()


def _run(args: argparse.Namespace, bundle: Any, engine: Any, started: float, options: Any) -> int:
    from .server import EngineServer

    names = list(dict.fromkeys([bundle.served_name, *args.served_model_name]))
    try:
        server = EngineServer(
            engine,
            args.endpoint,
            functools.partial(build_model_info, bundle, names, bundle.tokenizer.to_str()),
            curve=args.curve,
            engine_id=args.engine_id,
        )
    except Exception as exc:
        log.error("could not bind %s: %s", args.endpoint, exc)
        return 1
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    log.info(
        "engine ready model=%s names=%s endpoint=%s device=%s dtype=%s kv_blocks=%d block_size=%d "
        "max_batch_tokens=%d max_running=%d prefix_cache=%s curve=%s load_s=%.1f id=%s "
        "epoch=%s",
        args.model,
        ",".join(names),
        args.endpoint,
        bundle.device,
        str(bundle.dtype).removeprefix("torch."),
        engine.pool.num_blocks,
        engine.pool.block_size,
        engine.scheduler.max_batch_tokens,
        options.max_running,
        "on" if options.enable_prefix_cache else "off",
        "on" if args.curve else "off",
        time.monotonic() - started,
        server.engine_id,
        server.epoch,
    )
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
