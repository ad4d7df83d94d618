"""torch.compile'd CPU decode steps, one static-shape graph per batch-size bucket.

A decode step of B sequences is padded to the smallest compiled bucket >= B:
padded rows decode token 0 at position 0 into a scratch block that no
request owns (the caller reserves it), and their logits are dropped. Each
bucket is compiled with inductor's freezing (weights become constants:
bf16 linears are prepacked for oneDNN, elementwise ops fuse), small buckets
also with max-autotune. Compiling takes tens of seconds per bucket, so
`start()` compiles the buckets one by one in a background thread while the
eager model serves; `logits()` returns None for a batch no compiled bucket
covers yet. Inductor's caches live under `cache_dir()` (~/.cache/infer/inductor
unless TORCHINDUCTOR_CACHE_DIR is set), so a restart mostly reloads.

Invariant: the compiled path computes what `CausalLM.forward` +
`compute_logits` compute for a decode-only step, within bf16 rounding.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import threading
import time
from pathlib import Path

import torch
from torch import nn

from .cpp_kernels import start_build
from .decode_graph import decode_logits, decode_ops
from .kv_cache import KVCache
from .models import CausalLM

log = logging.getLogger("infer_worker")

DEFAULT_BUCKETS = (1, 4, 8)  # the int8 buckets: clear gains, FX-graph-cached
AUTOTUNE_MAX_BUCKET = 8  # research: max-autotune wins at small batches, loses at 32


def cache_dir() -> Path:
    """Inductor's cache directory (TORCHINDUCTOR_CACHE_DIR, else ~/.cache/infer/inductor)."""
    env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "infer" / "inductor"


class _DecodeStep(nn.Module):
    """decode_logits as a module, so torch.compile sees the weights as frozen constants."""

    def __init__(self, model: CausalLM) -> None:
        super().__init__()
        self.model = model
        self.ops = torch.ops.infer  # decode_ops() once the C++ library is built

    def forward(self, ids, positions, key_cache, value_cache, tables, lens, slots, *scales):
        return decode_logits(
            self.model, ids, positions, key_cache, value_cache, tables, lens, slots, self.ops,
            *scales,
        )  # fmt: skip


class CompiledDecode:
    """The compiled decode steps of one model over one KV cache."""

    def __init__(
        self,
        model: CausalLM,
        kv_cache: KVCache,
        scratch_block: int,
        buckets: tuple[int, ...] = DEFAULT_BUCKETS,
        autotune_max: int = AUTOTUNE_MAX_BUCKET,
    ) -> None:
        if not 0 <= scratch_block < kv_cache.num_blocks:
            raise ValueError(f"scratch block {scratch_block} outside the cache")
        self.model = model
        self.kv_cache = kv_cache
        self.scratch_block = scratch_block
        self.buckets = tuple(sorted(set(buckets)))
        self.width = -(-model.rotary.max_positions // kv_cache.block_size)
        self.max_positions = model.rotary.max_positions
        self.ready: set[int] = set()
        self.compile_seconds: dict[int, float] = {}
        self.steps = 0  # decode steps run through a compiled graph
        self._thread: threading.Thread | None = None
        step = _DecodeStep(model)
        self._step = step
        self._small = torch.compile(
            step, fullgraph=True, dynamic=False, options={"max_autotune": True}
        )
        self._large = torch.compile(step, fullgraph=True, dynamic=False)
        self._autotune_max = autotune_max

    def start(self, wait: bool = False) -> None:
        """Compile every bucket (smallest first) in a background thread; join it if wait."""
        if self._thread is None:
            atexit.register(gc.unfreeze)  # let the last collection free what _compile_all froze
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir()))
            self._thread = threading.Thread(target=self._compile_all, name="decode-compile")
            self._thread.daemon = True
            self._thread.start()
        if wait:
            self._thread.join()

    def _compile_all(self) -> None:
        start_build(wait=True)  # the graph calls the C++ kernels when they are there
        self._step.ops = decode_ops()
        for bucket in self.buckets:
            started = time.monotonic()
            try:
                # freezing is read before torch.compile's options apply, so it is patched here
                with torch._inductor.config.patch(freezing=True):
                    self._run(bucket, *self._dummy(bucket))
            except Exception:
                log.exception("compiling the decode step for batch %d failed; eager stays", bucket)
                return
            self.compile_seconds[bucket] = time.monotonic() - started
            # compiling leaves millions of long-lived Python objects (graphs, caches): out
            # of the collector's sight, or every full collection stalls steps for seconds
            gc.collect()
            gc.freeze()
            self.ready.add(bucket)
            log.info(
                "compiled decode step batch=%d in %.1f s", bucket, self.compile_seconds[bucket]
            )

    def _dummy(self, bucket: int) -> tuple[list[int], list[int], list[int], list[list[int]]]:
        return [0] * bucket, [0] * bucket, [1] * bucket, [[self.scratch_block]] * bucket

    def bucket_for(self, batch: int) -> int | None:
        """The smallest compiled bucket that holds batch rows, or None."""
        return next((b for b in self.buckets if b >= batch and b in self.ready), None)

    def logits(
        self, ids: list[int], positions: list[int], seq_lens: list[int], tables: list[list[int]]
    ) -> torch.Tensor | None:
        """float32 logits [len(ids), vocab] of a decode step, or None (no compiled bucket).

        tables[s] holds the blocks of sequence s (at least ceil(seq_lens[s] / block_size)).
        """
        bucket = self.bucket_for(len(ids))
        if bucket is None or max(positions) >= self.max_positions:
            return None
        logits = self._run(bucket, ids, positions, seq_lens, tables)
        self.steps += 1
        return logits[: len(ids)]

    def _run(self, bucket, ids, positions, seq_lens, tables) -> torch.Tensor:
        pad = bucket - len(ids)
        bs = self.kv_cache.block_size
        scratch = [self.scratch_block]
        tables = [t[: self.width] for t in tables] + [scratch] * pad
        table = torch.full((bucket, self.width), self.scratch_block, dtype=torch.int32)
        for row, blocks in enumerate(tables):
            table[row, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
        slots = [
            t[(n - 1) // bs] * bs + (n - 1) % bs for t, n in zip(tables, seq_lens, strict=False)
        ]
        slots += [self.scratch_block * bs] * pad
        args = (
            torch.tensor(ids + [0] * pad),
            torch.tensor(positions + [0] * pad),
            self.kv_cache.key_cache,
            self.kv_cache.value_cache,
            table,
            torch.tensor(seq_lens + [1] * pad, dtype=torch.int32),
            torch.tensor(slots),
        )
        if self.kv_cache.key_scale is not None:  # int8 pages: their row scales too
            args += (self.kv_cache.key_scale, self.kv_cache.value_scale)
        # the cache's block count is symbolic: one graph (and cache entry) for any cache size
        for cache in (args[2], args[3], *args[7:]):
            torch._dynamo.maybe_mark_dynamic(cache, 1)
        fn = self._small if bucket <= self._autotune_max else self._large
        # once every bucket is compiled, only the guards that tell the buckets apart run
        # (the full set costs ~0.6 ms a step): a bucket's inputs never change otherwise
        skip = len(self.ready) == len(self.buckets)
        with torch.inference_mode(), torch.compiler.set_stance(skip_guard_eval_unsafe=skip):
            return fn(*args)
