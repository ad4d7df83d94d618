"""A paged radix tree over token ids (SGLang RadixAttention semantics).

Each node holds a run of tokens whose length is a multiple of the block
size and the KV blocks that store them (one block per `block_size` tokens);
a child is found by the tuple of its first block's tokens. The tree owns the
blocks of its nodes until it evicts them back into the pool.

Invariants:
- a node is evictable iff it is an unlocked leaf (lock_ref == 0, no
  children); locking a node locks its whole path to the root;
- evictable_size + protected_size == tokens held by the tree, where
  protected_size counts the tokens of nodes with lock_ref > 0.
"""

from __future__ import annotations

import heapq
from itertools import count

from .block_pool import BlockPool


class Node:
    """A run of cached tokens and their blocks."""

    __slots__ = ("blocks", "children", "key", "last_access", "lock_ref", "parent")

    def __init__(self, key: list[int], blocks: list[int], parent: Node | None) -> None:
        self.key = key
        self.blocks = blocks
        self.parent = parent
        self.children: dict[tuple[int, ...], Node] = {}
        self.lock_ref = 0
        self.last_access = 0


class RadixCache:
    """Prefix cache of whole KV blocks keyed by token ids."""

    def __init__(self, pool: BlockPool) -> None:
        self.pool = pool
        self.block_size = pool.block_size
        self.root = Node([], [], None)
        self.root.lock_ref = 1  # the root is never evicted
        self.evictable_size = 0
        self.protected_size = 0
        self.node_count = 0
        self.evictions = 0
        self._clock = count(1)

    # ------------------------------------------------------------ queries
    @property
    def total_size(self) -> int:
        """Tokens held by the tree."""
        return self.evictable_size + self.protected_size

    @property
    def evictable_blocks(self) -> int:
        return self.evictable_size // self.block_size

    def match_prefix(self, tokens: list[int]) -> tuple[list[int], Node]:
        """Longest cached prefix of `tokens` in whole blocks: (its blocks, its last node).

        The node returned covers exactly the matched prefix (a node matched
        part-way is split), so locking it protects exactly those blocks.
        """
        bs = self.block_size
        end = len(tokens) // bs * bs
        node, pos, blocks = self.root, 0, []
        while pos < end:
            child = node.children.get(tuple(tokens[pos : pos + bs]))
            if child is None:
                break
            k = self._match_len(child.key, tokens, pos, end)
            child.last_access = next(self._clock)
            if k < len(child.key):
                child = self._split(child, k)
            blocks.extend(child.blocks)
            pos += k
            node = child
        return blocks, node

    # ------------------------------------------------------------ updates
    def insert(self, tokens: list[int], blocks: list[int]) -> int:
        """Cache `tokens` (whole blocks) stored in `blocks`; return the prefix length already cached.

        The tree takes ownership of blocks[prefix // block_size:]; the caller
        keeps (and must free, unless they are the tree's own) the blocks of
        the already-cached prefix.
        """
        bs = self.block_size
        end = len(tokens)
        if end % bs or len(blocks) != end // bs:
            raise ValueError("insert needs whole blocks: len(tokens) == len(blocks) * block_size")
        node, pos = self.root, 0
        while pos < end:
            first = tuple(tokens[pos : pos + bs])
            child = node.children.get(first)
            if child is None:
                leaf = Node(list(tokens[pos:end]), list(blocks[pos // bs :]), node)
                leaf.last_access = next(self._clock)
                node.children[first] = leaf
                self.evictable_size += end - pos
                self.node_count += 1
                return pos
            k = self._match_len(child.key, tokens, pos, end)
            child.last_access = next(self._clock)
            if k < len(child.key):
                child = self._split(child, k)
            pos += k
            node = child
        return pos

    def lock(self, node: Node) -> None:
        """Protect `node` and its ancestors from eviction (reference counted)."""
        while node is not self.root:
            if node.lock_ref == 0:
                self.evictable_size -= len(node.key)
                self.protected_size += len(node.key)
            node.lock_ref += 1
            node = node.parent

    def unlock(self, node: Node) -> None:
        """Undo one `lock(node)`."""
        while node is not self.root:
            if node.lock_ref <= 0:
                raise ValueError("unlock of a node that is not locked")
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self.evictable_size += len(node.key)
                self.protected_size -= len(node.key)
            node = node.parent

    def evict(self, num_blocks: int) -> int:
        """Free at least `num_blocks` blocks from least recently used unlocked leaves.

        Returns the number of blocks freed (less only when nothing else is
        evictable).
        """
        heap = [(n.last_access, id(n), n) for n in self._nodes() if self._evictable(n)]
        heapq.heapify(heap)
        freed = 0
        while freed < num_blocks and heap:
            _, _, node = heapq.heappop(heap)
            self.pool.free(node.blocks)
            freed += len(node.blocks)
            self.evictable_size -= len(node.key)
            self.node_count -= 1
            self.evictions += 1
            parent = node.parent
            del parent.children[tuple(node.key[: self.block_size])]
            if self._evictable(parent):
                heapq.heappush(heap, (parent.last_access, id(parent), parent))
        return freed

    # ------------------------------------------------------------ helpers
    def _evictable(self, node: Node) -> bool:
        return node is not self.root and node.lock_ref == 0 and not node.children

    def _nodes(self) -> list[Node]:
        out, stack = [], list(self.root.children.values())
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(node.children.values())
        return out

    def _match_len(self, key: list[int], tokens: list[int], pos: int, end: int) -> int:
        bs, i = self.block_size, 0
        limit = min(len(key), end - pos)
        while i + bs <= limit and key[i : i + bs] == tokens[pos + i : pos + i + bs]:
            i += bs
        return i

    def _split(self, child: Node, k: int) -> Node:
        """Split `child` after its first k tokens; return the new upper node."""
        bs = self.block_size
        parent = child.parent
        upper = Node(child.key[:k], child.blocks[: k // bs], parent)
        upper.lock_ref = child.lock_ref
        upper.last_access = child.last_access
        parent.children[tuple(child.key[:bs])] = upper
        child.key = child.key[k:]
        child.blocks = child.blocks[k // bs :]
        child.parent = upper
        upper.children[tuple(child.key[:bs])] = child
        self.node_count += 1
        return upper
