"""Runs one engine step on the model: inputs and attention metadata, forward, sampling.

Invariant: one forward pass per step over the flattened batch; logits are
computed only for the rows that sample (the last fed token of each request
whose fed tokens reach the end of its `all_ids`).
"""

from __future__ import annotations

from typing import Any

import torch

from infer_worker import KVCache, Sampler
from infer_worker.compile import DEFAULT_BUCKETS, CompiledDecode
from infer_worker.metadata import AttentionMetadata

from .cuda_graphs import DecodeGraphs
from .grammar import apply_masks
from .request import Request


class ModelRunner:
    """Owns the KV cache tensor and the sampler of one model."""

    def __init__(
        self,
        bundle: Any,
        num_blocks: int,
        block_size: int,
        kv_dtype: torch.dtype | None = None,
        cuda_graphs: bool = False,
        cpu_compile: str = "off",
        compile_buckets: tuple[int, ...] = DEFAULT_BUCKETS,
    ) -> None:
        self.model = bundle.model
        self.device = bundle.device
        self.block_size = block_size
        graphs = cuda_graphs and bundle.device.type == "cuda"
        compiled = cpu_compile != "off" and bundle.device.type == "cpu"
        # with CUDA graphs or compiled CPU steps, block num_blocks (never in the pool)
        # takes the padding rows
        self.kv_cache = KVCache(
            bundle.config,
            num_blocks + (graphs or compiled),
            block_size,
            kv_dtype or bundle.dtype,
            bundle.device,
        )
        self.graphs = DecodeGraphs(self.model, self.kv_cache, num_blocks, True) if graphs else None
        self.compiled: CompiledDecode | None = None
        if compiled:  # "on": compile every bucket now; "auto": in the background
            self.compiled = CompiledDecode(self.model, self.kv_cache, num_blocks, compile_buckets)
            self.compiled.start(wait=cpu_compile == "on")
        self.sampler = Sampler(bundle.config.vocab_size, bundle.device)
        # LongRoPE models (Phi-3): positions become rows of a table holding both factor sets
        self.row_offset = getattr(self.model, "rotary_row_offset", None)
        # dynamic NTK: the rotary needs each sequence's prompt length (rotary.py)
        rotaries = getattr(self.model, "rotaries", {})
        self.dynamic_rope = any(getattr(r, "dynamic", None) for r in rotaries.values())

    def run(self, items: list[tuple[Request, int]]) -> tuple[list[Request], Any]:
        """Feed `n` new tokens of each request; return (requests that sampled, SampleOutput)."""
        ids: list[int] = []
        positions: list[int] = []
        query_lens: list[int] = []
        seq_lens: list[int] = []
        tables: list[list[int]] = []
        rows: list[int] = []
        sampling: list[Request] = []
        for req, n in items:
            start = req.num_computed
            ids.extend(req.all_ids[start : start + n])
            offset = self.row_offset(req.num_tokens) if self.row_offset is not None else 0
            req.rotary_offset = offset
            positions.extend(range(start + offset, start + n + offset))
            query_lens.append(n)
            seq_lens.append(start + n)
            tables.append(req.block_table[: -(-(start + n) // self.block_size)])
            if start + n == req.num_tokens:
                rows.append(len(ids) - 1)
                sampling.append(req)
        if self.compiled is not None and len(sampling) == len(items) == len(ids):
            logits = self.compiled.logits(ids, positions, seq_lens, tables)
            if logits is not None:  # a decode-only step a compiled bucket covers
                return sampling, self._sample(logits, sampling)
        prompt_lens = [len(r.prompt_ids) for r, _ in items] if self.dynamic_rope else None
        meta = AttentionMetadata.build(
            query_lens, seq_lens, tables, self.block_size, self.device, prompt_lens
        )
        # a graph's decode rotary takes position + 1 as the length: only for tokens that
        # sample (a one-token prompt chunk before the prompt's end is not one)
        graph_ok = not self.dynamic_rope or len(sampling) == len(items)
        with torch.inference_mode():
            input_ids = torch.tensor(ids, dtype=torch.long, device=self.device)
            pos = torch.tensor(positions, dtype=torch.long, device=self.device)
            if self.graphs is not None and graph_ok and self.graphs.fits(meta):
                hidden = self.graphs.forward(input_ids, pos, meta)
            else:
                hidden = self.model(input_ids, pos, self.kv_cache, meta)
            if not sampling:
                return [], None
            index = torch.tensor(rows, dtype=torch.long, device=self.device)
            logits = self.model.compute_logits(hidden[index])
            out = self._sample(logits, sampling)
        return sampling, out

    def _sample(self, logits: torch.Tensor, sampling: list[Request]) -> Any:
        with torch.inference_mode():
            apply_masks(logits, sampling)  # constrained rows only; a no-op without any
            return self.sampler.sample(
                logits,
                [r.params for r in sampling],
                [r.generator for r in sampling],
                [r.prompt_ids for r in sampling],
                [r.output_ids for r in sampling],
            )
