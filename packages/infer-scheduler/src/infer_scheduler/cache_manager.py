"""Block ownership for requests: the pool plus the (optional) radix prefix cache.

Invariants: a request's `block_table` is its first `num_cached_blocks` blocks
owned by the prefix cache (locked through `req.cache_node`) followed by
blocks it owns privately; `release` returns every private block to the pool
or hands it to the cache, and drops the lock, so an idle engine holds no
block outside the free list and the cache.

With LongRoPE (Phi-3, `row_offset` given) a token's K/V depend on the factor set
of the sequence that wrote them: the cache key of tokens written with the long
set has its first token negated (token ids are >= 0), so each set has its own
subtree and a prefix is only reused by a request that uses the same set.
"""

from __future__ import annotations

from collections.abc import Callable

from infer_protocol import CacheStats

from .block_pool import BlockPool
from .radix_cache import RadixCache
from .request import Request


class CacheManager:
    """Gives requests KV blocks, reusing and filling the prefix cache."""

    def __init__(
        self,
        pool: BlockPool,
        enable_prefix_cache: bool = True,
        row_offset: Callable[[int], int] | None = None,
    ) -> None:
        self.pool = pool
        self.row_offset = row_offset
        self.block_size = pool.block_size
        self.cache = RadixCache(pool) if enable_prefix_cache else None
        self.hits = 0
        self.misses = 0

    @property
    def available_blocks(self) -> int:
        """Blocks obtainable now: free plus evictable."""
        return self.pool.num_free + (self.cache.evictable_blocks if self.cache else 0)

    def match(self, req: Request) -> None:
        """Point a request being admitted at its cached prefix and lock it.

        At least the last token stays uncomputed so the step can sample.
        """
        req.block_table, req.num_cached_blocks, req.cache_node, req.num_computed = [], 0, None, 0
        if self.cache is None:
            return
        offset = self.row_offset(req.num_tokens) if self.row_offset is not None else 0
        blocks, node = self.cache.match_prefix(_key(req.all_ids[:-1], offset))
        self.cache.lock(node)
        req.block_table = list(blocks)
        req.num_cached_blocks = len(blocks)
        req.cache_node = node
        req.num_computed = len(blocks) * self.block_size

    def record_admission(self, req: Request) -> None:
        """Count a request's first admission: its cached prompt tokens as hits, the rest
        of its prompt as misses (once per request: re-admissions after preemption and
        generated tokens never count, so hits / (hits + misses) is the share of admitted
        prompt tokens served from the cache)."""
        self.hits += req.cached_tokens
        self.misses += req.num_prompt - req.cached_tokens

    def grow(self, req: Request, num_tokens: int) -> bool:
        """Extend the block table to hold `num_tokens` tokens, evicting cache if needed.

        Returns False, allocating nothing, when the blocks cannot be found.
        """
        need = self.pool.blocks_for(num_tokens) - len(req.block_table)
        if need <= 0:
            return True
        if self.pool.num_free < need and self.cache is not None:
            self.cache.evict(need - self.pool.num_free)
        if self.pool.num_free < need:
            return False
        req.block_table.extend(self.pool.allocate(need))
        return True

    def cache_prefix(self, req: Request) -> None:
        """Hand the full blocks of the request's computed tokens to the cache.

        The request keeps reading them (now cache-owned and locked); private
        duplicates of blocks the cache already had go back to the pool.
        """
        if self.cache is None:
            return
        bs = self.block_size
        n_blocks = req.num_computed // bs
        if n_blocks <= req.num_cached_blocks:
            return
        tokens = _key(req.all_ids[: n_blocks * bs], req.rotary_offset)
        present = self.cache.insert(tokens, req.block_table[:n_blocks]) // bs
        self.pool.free(req.block_table[req.num_cached_blocks : present])
        tree_blocks, node = self.cache.match_prefix(tokens)
        assert len(tree_blocks) == n_blocks, "inserted prefix must match in full"
        req.block_table[:n_blocks] = tree_blocks
        self.cache.lock(node)
        if req.cache_node is not None:
            self.cache.unlock(req.cache_node)
        req.cache_node = node
        req.num_cached_blocks = n_blocks

    def release(self, req: Request, keep: bool = True) -> None:
        """Give back all of the request's blocks (computed full blocks to the cache if `keep`)."""
        if keep:
            self.cache_prefix(req)
        self.pool.free(req.block_table[req.num_cached_blocks :])
        if self.cache is not None and req.cache_node is not None:
            self.cache.unlock(req.cache_node)
        req.block_table, req.num_cached_blocks, req.cache_node, req.num_computed = [], 0, None, 0

    def stats(self) -> CacheStats:
        """The seed's `cache` object (sizes in tokens)."""
        looked_up = self.hits + self.misses
        cache = self.cache
        return CacheStats(
            hit_rate=self.hits / looked_up if looked_up else 0.0,
            hits=self.hits,
            misses=self.misses,
            evictable_size=cache.evictable_size if cache else 0,
            protected_size=cache.protected_size if cache else 0,
            total_cached=cache.total_size if cache else 0,
            total_capacity=self.pool.num_blocks * self.block_size,
            evictions=cache.evictions if cache else 0,
            node_count=cache.node_count if cache else 0,
        )


def _key(tokens: list[int], rotary_offset: int) -> list[int]:
    """The radix key of tokens whose K/V were rotated with LongRoPE row offset
    `rotary_offset` (0: the short set, or no LongRoPE)."""
    if not rotary_offset or not tokens:
        return tokens
    return [-1 - tokens[0], *tokens[1:]]
