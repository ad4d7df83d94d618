"""Request state inside the engine.

Invariants: `all_ids` is the prompt followed by the generated tokens;
`num_computed` tokens of `all_ids` have their K/V in the blocks of
`block_table` (the first `num_cached_blocks` of which belong to the prefix
cache and are locked through `cache_node`), rotated with the model's rotary
table rows shifted by `rotary_offset` (always 0 except for LongRoPE models). A request with
`num_computed == len(all_ids) - 1` is decoding: its next step feeds its last
token and samples one more.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from infer_protocol import SamplingParams


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Request:
    """One generation request and everything the engine tracks about it."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int = 512
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False
    arrival: float = field(default_factory=time.monotonic)
    generator: Any = None  # torch.Generator for seeded sampling, else None
    grammar: Any = None  # grammar.GrammarState of a constrained request, else None

    status: Status = Status.WAITING
    all_ids: list[int] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    num_computed: int = 0
    num_cached_blocks: int = 0
    cache_node: Any = None
    cached_tokens: int = 0  # prefix-cache hit of the first admission (Usage.cached_tokens)
    finish_reason: str | None = None
    admitted_seq: int = -1  # order of the latest admission; the largest is the newest
    num_preemptions: int = 0
    rotary_offset: int = 0  # rotary row offset of the computed K/V (model.rotary_row_offset)

    first_scheduled: float | None = None
    first_token: float | None = None
    finished_at: float | None = None
    batch_size_sum: int = 0
    steps: int = 0

    def __post_init__(self) -> None:
        self.prompt_ids = list(self.prompt_ids)
        self.all_ids = list(self.prompt_ids)

    @property
    def num_prompt(self) -> int:
        return len(self.prompt_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.all_ids)

    @property
    def output_ids(self) -> list[int]:
        return self.all_ids[len(self.prompt_ids) :]

    @property
    def num_output(self) -> int:
        return len(self.all_ids) - len(self.prompt_ids)

    @property
    def remaining(self) -> int:
        """Tokens still to feed through the model before the next sample."""
        return len(self.all_ids) - self.num_computed

    @property
    def is_prefill(self) -> bool:
        return self.remaining > 1

    @property
    def finished(self) -> bool:
        return self.status is Status.FINISHED
