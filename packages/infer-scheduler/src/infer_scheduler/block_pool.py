"""A pool of fixed-size KV cache blocks, identified by index.

Invariant: every block index in [0, num_blocks) is either in the free list or
held by exactly one owner (a request's private blocks or the prefix cache);
`free` rejects a double free or an unknown index so leaks and double
ownership show up at once.
"""

from __future__ import annotations

from collections import deque


class OutOfBlocks(RuntimeError):
    """More blocks were asked for than the pool has free."""


class BlockPool:
    """Hands out and takes back KV block indices."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: deque[int] = deque(range(num_blocks))
        self._is_free = [True] * num_blocks

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self._free)

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold `num_tokens` tokens."""
        return -(-num_tokens // self.block_size)

    def allocate(self, count: int) -> list[int]:
        """Take `count` free blocks; raise OutOfBlocks (taking none) if too few."""
        if count > len(self._free):
            raise OutOfBlocks(f"asked for {count} blocks, {len(self._free)} free")
        out = [self._free.popleft() for _ in range(count)]
        for block in out:
            self._is_free[block] = False
        return out

    def free(self, blocks: list[int]) -> None:
        """Give blocks back; each must be currently allocated."""
        for block in blocks:
            if not 0 <= block < self.num_blocks or self._is_free[block]:
                raise ValueError(f"block {block} is not allocated")
            self._is_free[block] = True
            self._free.append(block)
