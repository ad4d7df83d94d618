"""Scheduling policy: which requests run in the next step, and with how many tokens.

Invariants:
- a step feeds at most `max_batch_tokens` tokens and holds at most
  `max_running` requests; running decodes are served before partial
  prefills, and both before new admissions, so a long prompt is chunked
  around the decodes and never stalls them;
- when a running request cannot get blocks, unlocked cache is evicted first,
  then the newest running request is preempted (its blocks released, itself
  put back at the head of the waiting queue to be recomputed); no new request
  is admitted in a step that preempted;
- with a LongRoPE model (`row_offset` given), a running request whose K/V were
  rotated with the other factor set than its length now needs (it just grew
  past the switch length) is recomputed from token 0, as transformers'
  generate recomputes its cache: its blocks go back (full ones to the prefix
  cache, keyed by their set) and it starts over from the cached prefix of the
  new set;
- a request that cannot fit even alone in the whole pool is finished with
  reason "length" instead of waiting forever; an admitted prompt chunk is
  cut to the blocks obtainable now.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

from .cache_manager import CacheManager
from .request import Request, Status


@dataclass
class Batch:
    """The work of one step: each request with the number of new tokens it feeds."""

    items: list[tuple[Request, int]] = field(default_factory=list)
    finished: list[Request] = field(default_factory=list)  # finished by the policy itself
    preempted: int = 0

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.items)

    def __len__(self) -> int:
        return len(self.items)


class Scheduler:
    """Holds the waiting queue and the running set; builds one Batch per step."""

    def __init__(
        self,
        cache: CacheManager,
        max_running: int,
        max_batch_tokens: int,
        row_offset: Callable[[int], int] | None = None,
    ) -> None:
        if max_running < 1 or max_batch_tokens < 1:
            raise ValueError("max_running and max_batch_tokens must be >= 1")
        self.row_offset = row_offset
        self.cache = cache
        self.max_running = max_running
        self.max_batch_tokens = max_batch_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._admissions = count()
        self.preemptions = 0  # total since start

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, req: Request) -> None:
        req.status = Status.WAITING
        self.waiting.append(req)

    def remove(self, req: Request) -> None:
        """Take a request out (finished or aborted) and release its blocks."""
        if req.status is Status.RUNNING:
            self.running.remove(req)
            self.cache.release(req)
        elif req.status is Status.WAITING:
            self.waiting.remove(req)
        req.status = Status.FINISHED

    def schedule(self) -> Batch:
        """Pick this step's requests and token counts, allocating their blocks."""
        batch = Batch()
        budget = self.max_batch_tokens
        in_batch: set[int] = set()
        for req in sorted(self.running, key=lambda r: (r.is_prefill, r.admitted_seq)):
            if req.status is not Status.RUNNING:
                continue  # preempted earlier in this loop
            if budget <= 0:
                break
            self._rewind_if_rotary_switched(req)
            n = min(req.remaining, budget)
            if self._fit(req, n, in_batch, batch):
                batch.items.append((req, n))
                in_batch.add(id(req))
                budget -= n
        if batch.preempted:
            return batch
        while self.waiting and budget > 0 and len(self.running) < self.max_running:
            req = self.waiting[0]
            self.cache.match(req)
            n = min(req.remaining, budget, self._room(req))
            if n <= 0 or not self.cache.grow(req, req.num_computed + n):
                self.cache.release(req, keep=False)
                if not self.running:  # the whole pool is free or evictable: it never fits
                    self.waiting.popleft()
                    req.status = Status.FINISHED
                    req.finish_reason = "length"
                    batch.finished.append(req)
                    continue
                break
            self.waiting.popleft()
            if req.num_preemptions == 0 and req.first_scheduled is None:
                req.cached_tokens = req.num_computed
                self.cache.record_admission(req)
            req.status = Status.RUNNING
            req.admitted_seq = next(self._admissions)
            self.running.append(req)
            batch.items.append((req, n))
            budget -= n
        return batch

    def _rewind_if_rotary_switched(self, req: Request) -> None:
        """Recompute every token of a request whose K/V used the other LongRoPE factor set."""
        if self.row_offset is None or req.num_computed == 0:
            return
        if self.row_offset(req.num_tokens) == req.rotary_offset:
            return
        if self.cache.cache is None:
            req.num_computed = 0  # its blocks are private: rewritten in place
            return
        self.cache.release(req)  # cache-owned blocks are shared: never rewritten
        self.cache.match(req)
        req.rotary_offset = self.row_offset(req.num_tokens)

    def _room(self, req: Request) -> int:
        """Tokens the request could add now (its blocks' slack plus free and evictable blocks)."""
        blocks = len(req.block_table) + self.cache.available_blocks
        return blocks * self.cache.block_size - req.num_computed

    def _fit(self, req: Request, n: int, in_batch: set[int], batch: Batch) -> bool:
        """Get blocks for `n` more tokens of a running request, preempting if needed."""
        while not self.cache.grow(req, req.num_computed + n):
            others = [r for r in self.running if r is not req and id(r) not in in_batch]
            if others:
                self._preempt(max(others, key=lambda r: r.admitted_seq), batch)
                continue
            if len(self.running) > 1:
                self._preempt(req, batch)  # older requests hold the blocks; wait for them
            else:
                self.running.remove(req)  # alone and still too big for the pool
                self.cache.release(req)
                req.status = Status.FINISHED
                req.finish_reason = "length"
                batch.finished.append(req)
            return False
        return True

    def _preempt(self, req: Request, batch: Batch) -> None:
        self.running.remove(req)
        self.cache.release(req)
        req.status = Status.WAITING
        req.num_preemptions += 1
        self.waiting.appendleft(req)
        batch.preempted += 1
        self.preemptions += 1
