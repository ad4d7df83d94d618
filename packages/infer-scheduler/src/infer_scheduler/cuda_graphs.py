"""CUDA graphs for decode steps: one captured forward pass per padded batch size.

A decode step (one new token for each of B sequences) replays the graph of
the smallest size class >= B, captured on first use. Inputs are copied into
static buffers; rows B.. of the class are padding: token 0 at position 0,
seq_len 1, a block table whose first entry is the scratch block, and a
key/value slot inside it. The scratch block is one block past those the
pool hands out (the KV cache holds num_blocks + 1), so padding never
touches a real request's cache.

Invariants: the returned hidden rows are a view of the graph's static
output, valid until the next replay; block table columns past a row's
length are stale and never read (seq_lens bound every read).
With capture=False the same static-buffer path runs eagerly (to test it
where there is no GPU).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from infer_worker import AttentionMetadata, KVCache

log = logging.getLogger("infer_scheduler")

SIZE_CLASSES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256)


class DecodeGraphs:
    """Captured decode forwards of `model` over `kv_cache` for batches of 1..max(SIZE_CLASSES)."""

    def __init__(self, model: Any, kv_cache: KVCache, scratch_block: int, capture: bool) -> None:
        self.model = model
        self.kv_cache = kv_cache
        self.capture = capture
        self.block_size = kv_cache.block_size
        self.scratch_slot = scratch_block * self.block_size
        self.scratch_block = scratch_block
        self.context = model.config.context_length
        self.width = -(-self.context // self.block_size)
        n = SIZE_CLASSES[-1]
        dev = kv_cache.device
        self.ids = torch.zeros(n, dtype=torch.long, device=dev)
        self.positions = torch.zeros(n, dtype=torch.long, device=dev)
        self.seq_lens = torch.ones(n, dtype=torch.int32, device=dev)
        self.tables = torch.full((n, self.width), scratch_block, dtype=torch.int32, device=dev)
        self.slots = torch.full((n,), self.scratch_slot, dtype=torch.long, device=dev)
        self.starts = torch.arange(n + 1, dtype=torch.int32, device=dev)
        self.graphs: dict[int, tuple[Any, torch.Tensor]] = {}
        self.pool = torch.cuda.graph_pool_handle() if capture else None

    def fits(self, meta: AttentionMetadata) -> bool:
        """True for a decode-only batch this class can run."""
        return (
            meta.decode_only
            and 0 < meta.num_seqs <= SIZE_CLASSES[-1]
            and meta.block_tables.shape[1] <= self.width
            and meta.max_seq_len <= self.context
        )

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        """Hidden states [B, hidden] of a decode step (meta must pass `fits`)."""
        b = meta.num_seqs
        size = next(s for s in SIZE_CLASSES if s >= b)
        if self.capture and size not in self.graphs:
            self.graphs[size] = self._capture(size)
        width = meta.block_tables.shape[1]
        self.ids[:b].copy_(input_ids)
        self.positions[:b].copy_(positions)
        self.seq_lens[:b].copy_(meta.seq_lens)
        self.tables[:b, :width].copy_(meta.block_tables)
        self.slots[:b].copy_(meta.slot_mapping)
        self._pad(b, size)
        if not self.capture:
            return self._run(size)[:b]
        graph, out = self.graphs[size]
        graph.replay()
        return out[:b]

    def _pad(self, start: int, end: int) -> None:
        if start < end:
            self.ids[start:end] = 0
            self.positions[start:end] = 0
            self.seq_lens[start:end] = 1
            self.tables[start:end, 0] = self.scratch_block
            self.slots[start:end] = self.scratch_slot

    def _meta(self, size: int) -> AttentionMetadata:
        return AttentionMetadata(
            query_start_loc=self.starts[: size + 1],
            seq_lens=self.seq_lens[:size],
            block_tables=self.tables[:size],
            slot_mapping=self.slots[:size],
            num_seqs=size,
            num_tokens=size,
            max_query_len=1,
            max_seq_len=self.context,
        )

    def _run(self, size: int) -> torch.Tensor:
        return self.model(self.ids[:size], self.positions[:size], self.kv_cache, self._meta(size))

    def _capture(self, size: int) -> tuple[Any, torch.Tensor]:
        """Warm up on padding rows (compiles kernels), then capture one forward."""
        self._pad(0, size)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._run(size)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self._run(size)
        log.info("captured a CUDA graph for decode batches of %d", size)
        return graph, out
