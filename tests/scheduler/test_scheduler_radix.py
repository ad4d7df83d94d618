"""Block pool and radix prefix cache, exercised directly."""

from __future__ import annotations

import random

import pytest

from infer_scheduler.block_pool import BlockPool, OutOfBlocks
from infer_scheduler.radix_cache import RadixCache


def test_pool_allocates_and_rejects_double_free() -> None:
    pool = BlockPool(4, 2)
    blocks = pool.allocate(3)
    assert len(set(blocks)) == 3 and pool.num_free == 1
    with pytest.raises(OutOfBlocks):
        pool.allocate(2)
    assert pool.num_free == 1  # a failed allocation takes nothing
    pool.free(blocks[:1])
    with pytest.raises(ValueError):
        pool.free(blocks[:1])
    with pytest.raises(ValueError):
        pool.free([99])
    assert pool.blocks_for(5) == 3 and pool.blocks_for(4) == 2


def _insert(cache: RadixCache, tokens: list[int]) -> int:
    blocks = cache.pool.allocate(len(tokens) // cache.block_size)
    present = cache.insert(tokens, blocks)
    cache.pool.free(blocks[: present // cache.block_size])
    return present


def test_match_insert_split_and_sizes() -> None:
    pool = BlockPool(32, 4)
    cache = RadixCache(pool)
    a = list(range(16))
    assert _insert(cache, a) == 0
    assert cache.evictable_size == 16 and cache.node_count == 1
    b = a[:8] + [100, 101, 102, 103]
    assert _insert(cache, b) == 8  # shares two blocks, splits the first node
    assert cache.node_count == 3 and cache.total_size == 20

    blocks, node = cache.match_prefix(a[:8] + [100, 101, 102, 103, 7, 7])
    assert len(blocks) == 3 and len(node.key) == 4
    # a match ending inside a node splits it so the node covers exactly the match
    blocks, node = cache.match_prefix(a[:5])
    assert len(blocks) == 1 and len(node.key) == 4
    assert cache.total_size == 20 and pool.num_used == 5

    cache.lock(node)
    assert cache.protected_size == 4 and cache.evictable_size == 16
    cache.unlock(node)
    assert cache.protected_size == 0 and cache.evictable_size == 20
    with pytest.raises(ValueError):
        cache.unlock(node)


def test_eviction_is_lru_over_unlocked_leaves() -> None:
    pool = BlockPool(8, 2)
    cache = RadixCache(pool)
    old, mid, new = [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]
    for seq in (old, mid, new):
        _insert(cache, seq)
    assert pool.num_free == 2
    _, node = cache.match_prefix(old)  # touch `old`: `mid` becomes the LRU
    _, locked = cache.match_prefix(new)
    cache.lock(locked)
    assert cache.evict(1) == 2
    assert cache.match_prefix(mid)[0] == []
    assert len(cache.match_prefix(old)[0]) == 2
    assert cache.evict(100) == 2  # only `old` is left to evict; `new` is locked
    assert len(cache.match_prefix(new)[0]) == 2 and cache.evictions == 2
    cache.unlock(locked)
    cache.evict(100)
    assert pool.num_free == 8 and cache.total_size == 0 and cache.node_count == 0


def test_parent_becomes_evictable_after_children() -> None:
    pool = BlockPool(8, 2)
    cache = RadixCache(pool)
    _insert(cache, [1, 1, 2, 2])
    _insert(cache, [1, 1, 3, 3])
    assert cache.node_count == 3
    assert cache.evict(3) == 3
    assert pool.num_free == 8 and cache.node_count == 0


def test_random_operations_keep_accounting() -> None:
    rng = random.Random(0)
    pool = BlockPool(64, 2)
    cache = RadixCache(pool)
    locks = []
    for _ in range(400):
        op = rng.random()
        seq = [rng.randrange(3) for _ in range(2 * rng.randrange(1, 6))]
        if op < 0.5 and pool.num_free >= len(seq) // 2:
            _insert(cache, seq)
        elif op < 0.7:
            _, node = cache.match_prefix(seq)
            cache.lock(node)
            locks.append(node)
        elif op < 0.85 and locks:
            cache.unlock(locks.pop(rng.randrange(len(locks))))
        else:
            cache.evict(rng.randrange(1, 5))
        assert pool.num_used * 2 == cache.total_size
        assert cache.evictable_size >= 0 and cache.protected_size >= 0
    for node in locks:
        cache.unlock(node)
    cache.evict(1000)
    assert pool.num_free == 64 and cache.node_count == 0
