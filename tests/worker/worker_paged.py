"""Paged runs for the worker tests (a uniquely named helper module: every test folder
has a conftest, so `from conftest import ...` can find another folder's)."""

from __future__ import annotations

import torch

from infer_worker import AttentionMetadata, KVCache, ModelBundle


class PagedRunner:
    """Runs prompts through the paged cache the way the scheduler does (tests only)."""

    def __init__(
        self,
        bundle: ModelBundle,
        num_blocks: int = 256,
        block_size: int = 16,
        kv_dtype: torch.dtype | None = None,
    ) -> None:
        self.bundle = bundle
        self.block_size = block_size
        dtype = kv_dtype or bundle.dtype
        self.cache = KVCache(bundle.config, num_blocks, block_size, dtype, bundle.device)
        self.next_block = 1  # block 0 stays unused so padding never aliases a real block

    def tables(self, lengths: list[int]) -> list[list[int]]:
        tables = []
        for n in lengths:
            count = -(-n // self.block_size)
            # hand out blocks in reverse order so tables are not contiguous
            tables.append(list(range(self.next_block + count - 1, self.next_block - 1, -1)))
            self.next_block += count
        return tables

    def step(
        self, chunks: list[list[int]], starts: list[int], tables: list[list[int]]
    ) -> torch.Tensor:
        """Feed chunk s (positions starts[s]..) of each sequence; logits of each chunk's last token."""
        ids = [t for c in chunks for t in c]
        positions = [starts[s] + j for s, c in enumerate(chunks) for j in range(len(c))]
        q_lens = [len(c) for c in chunks]
        seq_lens = [starts[s] + len(c) for s, c in enumerate(chunks)]
        meta = AttentionMetadata.build(
            q_lens, seq_lens, tables, self.block_size, self.bundle.device
        )
        dev = self.bundle.device
        hidden = self.bundle.model(
            torch.tensor(ids, device=dev), torch.tensor(positions, device=dev), self.cache, meta
        )
        last = torch.tensor([sum(q_lens[: s + 1]) - 1 for s in range(len(chunks))], device=dev)
        return self.bundle.model.compute_logits(hidden[last])

    def greedy(self, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
        """Prefill all prompts in one step, then decode all together."""
        tables = self.tables([len(p) + new_tokens for p in prompts])
        logits = self.step(prompts, [0] * len(prompts), tables)
        outs = [[int(t)] for t in logits.argmax(-1).tolist()]
        for _ in range(new_tokens - 1):
            starts = [len(p) + len(o) - 1 for p, o in zip(prompts, outs, strict=True)]
            logits = self.step([[o[-1]] for o in outs], starts, tables)
            for o, t in zip(outs, logits.argmax(-1).tolist(), strict=True):
                o.append(int(t))
        return outs

    def teacher_forced(self, prompt: list[int], tokens: list[int]) -> torch.Tensor:
        """Logits [len(tokens), vocab]: row i after prompt + tokens[:i], one decode step each."""
        table = self.tables([len(prompt) + len(tokens)])
        rows = [self.step([prompt], [0], table)[0]]
        for i, token in enumerate(tokens[:-1]):
            rows.append(self.step([[token]], [len(prompt) + i], table)[0])
        return torch.stack(rows)

    def staggered_greedy(
        self, prompts: list[list[int]], new_tokens: int, chunk: int = 7
    ) -> list[list[int]]:
        """Continuous batching: sequence i joins at step 2*i with prefill chunks of `chunk`
        tokens while the others decode, so most steps mix prefills and decodes."""
        tables = self.tables([len(p) + new_tokens for p in prompts])
        outs: list[list[int]] = [[] for _ in prompts]
        fed = [0] * len(prompts)
        step = 0
        while any(len(o) < new_tokens for o in outs):
            active = [i for i in range(len(prompts)) if step >= 2 * i and len(outs[i]) < new_tokens]
            chunks = []
            for i in active:
                tokens = prompts[i] + outs[i]
                chunks.append(tokens[fed[i] : fed[i] + chunk])
            logits = self.step(chunks, [fed[i] for i in active], [tables[i] for i in active])
            for row, i in enumerate(active):
                fed[i] += len(chunks[row])
                if fed[i] == len(prompts[i]) + len(outs[i]):
                    outs[i].append(int(logits[row].argmax()))
            step += 1
        return outs
