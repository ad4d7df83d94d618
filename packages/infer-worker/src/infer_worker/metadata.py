"""Per-step attention metadata shared by every layer of one forward pass.

Contract between the scheduler's model runner (which builds it once per
step) and the attention implementations (which read it in every layer).

The batch is flattened: the query tokens of sequence 0, then those of
sequence 1, and so on. Sequence s contributes q_len[s] =
query_start_loc[s+1] - query_start_loc[s] >= 1 query tokens; they are the
last q_len[s] tokens of its context, so query j of sequence s sits at
position seq_lens[s] - q_len[s] + j and attends causally to positions
0 .. that position. A prefill chunk may start after a cached prefix
(seq_lens[s] > q_len[s]); a decode has q_len[s] == 1.

Before attending, each layer writes the new keys and values of flattened
token i into cache slot slot_mapping[i] = block * block_size + offset.
Block tables are padded with 0; entries past ceil(seq_lens[s] / block_size)
are never read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    """Tensors live on the model's device; the ints are host-side copies."""

    query_start_loc: torch.Tensor  # int32 [num_seqs + 1]
    seq_lens: torch.Tensor  # int32 [num_seqs]
    block_tables: torch.Tensor  # int32 [num_seqs, max_blocks_per_seq]
    slot_mapping: torch.Tensor  # int64 [num_tokens]
    num_seqs: int
    num_tokens: int
    max_query_len: int
    max_seq_len: int
    # dynamic NTK rotary only: each sequence's prompt length (int32 [num_seqs]); a token at
    # position p rotates for length max(prompt_len, p + 1). None: for its seq_len
    prompt_lens: torch.Tensor | None = None
    max_prompt_len: int = 0

    @property
    def decode_only(self) -> bool:
        """True when every sequence has exactly one query token."""
        return self.max_query_len == 1

    @classmethod
    def build(
        cls,
        query_lens: list[int],
        seq_lens: list[int],
        block_tables: list[list[int]],
        block_size: int,
        device: torch.device | str = "cpu",
        prompt_lens: list[int] | None = None,
    ) -> AttentionMetadata:
        """Build metadata from host lists (slot mapping derived from the tables)."""
        num_seqs = len(query_lens)
        starts = [0]
        slots: list[int] = []
        for q, total, table in zip(query_lens, seq_lens, block_tables, strict=True):
            starts.append(starts[-1] + q)
            for pos in range(total - q, total):
                slots.append(table[pos // block_size] * block_size + pos % block_size)
        width = max((len(t) for t in block_tables), default=1) or 1
        padded = [t + [0] * (width - len(t)) for t in block_tables]
        return cls(
            query_start_loc=torch.tensor(starts, dtype=torch.int32, device=device),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device),
            block_tables=torch.tensor(padded, dtype=torch.int32, device=device).reshape(
                num_seqs, width
            ),
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=device),
            num_seqs=num_seqs,
            num_tokens=starts[-1],
            max_query_len=max(query_lens, default=0),
            max_seq_len=max(seq_lens, default=0),
            prompt_lens=None
            if prompt_lens is None
            else torch.tensor(prompt_lens, dtype=torch.int32, device=device),
            max_prompt_len=max(prompt_lens or [], default=0),
        )
