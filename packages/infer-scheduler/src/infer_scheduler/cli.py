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
from typing import Any

from infer_protocol import ModelInfo
from infer_protocol.curve import CurveError, plaintext_refusal, server_keys
from infer_protocol.defaults import LOG_LEVELS, log_level_name

from .engine_flags import batch_sizes, build_parser

__all__ = ["batch_sizes", "build_model_info", "build_parser", "kill_descendants", "main"]

# OpenMP spin iterations before a worker thread sleeps (libgomp; ~0.1 ms)
DEFAULT_SPINCOUNT = "10000"
log = logging.getLogger("infer_scheduler")


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
        "%s max_batch_tokens=%d max_running=%d prefix_cache=%s curve=%s load_s=%.1f id=%s "
        "epoch=%s",
        args.model,
        ",".join(names),
        args.endpoint,
        bundle.device,
        str(bundle.dtype).removeprefix("torch."),
        engine.pool.num_blocks,
        engine.pool.block_size,
        engine.kv_summary(),
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
