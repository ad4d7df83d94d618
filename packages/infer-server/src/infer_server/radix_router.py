"""Cache-aware routing: send a prompt to the engine that most likely holds its prefix.

sgl-router's algorithm over token ids. Per model, a radix tree of the prompts
routed so far; every node records which engines ("tenants") were sent a
prompt through it and when (a logical clock that ticks once per `choose`).
A prompt goes to the candidate holding its longest prefix when that prefix is
at least `cache_threshold` of the prompt and the candidates' loads are not
imbalanced; otherwise to the least loaded candidate. The chosen engine becomes
a tenant of the whole prompt.

Invariants:
- tenancy is prefix-closed: a tenant of a node is a tenant of its ancestors;
- a node (other than the root) always has at least one tenant;
- after every `choose` a tree holds at most `max_tree_tokens` tokens on its
  edges: past that, least-recently-used tenant leaves are evicted down to
  9/10 of it (so that the walk over the tree is paid once per many requests);
- not thread-safe: the gateway calls `choose` and `forget` from its event
  loop only.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterator, Sequence

from infer_server.routing import EngineLoad

DEFAULT_CACHE_THRESHOLD = 0.3
DEFAULT_BALANCE_ABS = 64
DEFAULT_BALANCE_REL = 1.5
DEFAULT_MAX_TREE_TOKENS = 2**20


class _Node:
    __slots__ = ("tokens", "parent", "children", "tenants")

    def __init__(self, tokens: tuple[int, ...], parent: _Node | None) -> None:
        self.tokens = tokens  # the edge from the parent; children are keyed by its first token
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.tenants: dict[str, int] = {}  # engine_id -> clock of its last prompt through here


def _common(edge: tuple[int, ...], tokens: Sequence[int], start: int) -> int:
    """How many tokens of `edge` equal `tokens[start:]`, from the first."""
    n = min(len(edge), len(tokens) - start)
    i = 0
    while i < n and edge[i] == tokens[start + i]:
        i += 1
    return i


class PrefixTree:
    """The routed prompts of one model, with engines as tenants of their prefixes."""

    def __init__(self) -> None:
        self.root = _Node((), None)
        self.size = 0  # tokens on all edges
        self.held: Counter[str] = Counter()  # tokens on the edges each engine is a tenant of

    def match(self, tokens: Sequence[int], engines: set[str]) -> tuple[int, set[str]]:
        """The longest prefix of `tokens` held by one of `engines`, and which of them hold it."""
        node, pos, holders = self.root, 0, set()
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                break
            here = engines & child.tenants.keys()
            if not here:
                break
            n = _common(child.tokens, tokens, pos)
            pos, holders = pos + n, here
            if n < len(child.tokens):
                break
            node = child
        return (pos if holders else 0), holders

    def insert(self, tokens: Sequence[int], engine: str, now: int) -> None:
        """Make `engine` a tenant of every prefix of `tokens`, last used at `now`."""
        node, pos = self.root, 0
        self._touch(node, engine, now)
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                leaf = _Node(tuple(tokens[pos:]), node)
                node.children[tokens[pos]] = leaf
                self.size += len(leaf.tokens)
                self._touch(leaf, engine, now)
                return
            n = _common(child.tokens, tokens, pos)
            if n < len(child.tokens):
                child = self._split(child, n)
            self._touch(child, engine, now)
            pos, node = pos + n, child

    def forget(self, engine: str) -> None:
        """Drop `engine` from every node (children before their parents)."""
        held: list[_Node] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            if engine in node.tenants:
                held.append(node)
                stack.extend(node.children.values())
        for node in reversed(held):
            self._drop(node, engine)
        del self.held[engine]

    def evict(self, target: int) -> None:
        """Drop least-recently-used tenant leaves until `size <= target`."""
        heap = [
            (t, e, id(node), node)
            for node in self._nodes()
            for e, t in node.tenants.items()
            if node is not self.root and self._leaf_for(node, e)
        ]
        heapq.heapify(heap)
        while self.size > target and heap:
            _, engine, _, node = heapq.heappop(heap)
            parent = node.parent
            self._drop(node, engine)
            if parent is not self.root and parent is not None and self._leaf_for(parent, engine):
                heapq.heappush(heap, (parent.tenants[engine], engine, id(parent), parent))

    def _nodes(self) -> Iterator[_Node]:
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())

    @staticmethod
    def _leaf_for(node: _Node, engine: str) -> bool:
        """`engine` holds `node` but none of its children."""
        held = engine in node.tenants
        return held and not any(engine in c.tenants for c in node.children.values())

    def _split(self, child: _Node, n: int) -> _Node:
        """Cut `child`'s edge after `n` tokens; returns the new upper node (same tenants)."""
        parent = child.parent
        assert parent is not None
        upper = _Node(child.tokens[:n], parent)
        upper.tenants = dict(child.tenants)
        parent.children[child.tokens[0]] = upper
        child.tokens = child.tokens[n:]
        child.parent = upper
        upper.children[child.tokens[0]] = child
        return upper

    def _touch(self, node: _Node, engine: str, now: int) -> None:
        if engine not in node.tenants:
            self.held[engine] += len(node.tokens)
        node.tenants[engine] = now

    def _drop(self, node: _Node, engine: str) -> None:
        """Remove one tenant; a node left without tenants (never the root) leaves the tree."""
        del node.tenants[engine]
        self.held[engine] -= len(node.tokens)
        if not node.tenants and node.parent is not None:
            del node.parent.children[node.tokens[0]]
            self.size -= len(node.tokens)


class CacheAware:
    """The `cache_aware` policy: prefix affinity unless load is imbalanced.

    Loads are imbalanced when `max - min > balance_abs` and
    `max > balance_rel * min` over the candidates' `EngineLoad.load`. Among
    several engines (the holders of a match, or every candidate) the least
    loaded wins; ties go to the engine holding fewer tokens in the model's
    tree (sgl-router's "smallest tree", which spreads new prefixes over idle
    engines), then lower KV use, then id.
    """

    def __init__(
        self,
        *,
        cache_threshold: float = DEFAULT_CACHE_THRESHOLD,
        balance_abs: int = DEFAULT_BALANCE_ABS,
        balance_rel: float = DEFAULT_BALANCE_REL,
        max_tree_tokens: int = DEFAULT_MAX_TREE_TOKENS,
    ) -> None:
        if not 0.0 <= cache_threshold <= 1.0:
            raise ValueError(f"cache_threshold must be within [0, 1], got {cache_threshold}")
        if balance_abs < 0:
            raise ValueError(f"balance_abs must be >= 0, got {balance_abs}")
        if not balance_rel >= 1.0:
            raise ValueError(f"balance_rel must be >= 1, got {balance_rel}")
        if max_tree_tokens < 1:
            raise ValueError(f"max_tree_tokens must be >= 1, got {max_tree_tokens}")
        self.cache_threshold = cache_threshold
        self.balance_abs = balance_abs
        self.balance_rel = balance_rel
        self.max_tree_tokens = max_tree_tokens
        self._trees: dict[str, PrefixTree] = {}
        self._clock = itertools.count(1)

    def choose(self, model: str, token_ids: Sequence[int], candidates: Sequence[EngineLoad]) -> str:
        tree = self._trees.setdefault(model, PrefixTree())
        loads = [c.load for c in candidates]
        high, low = max(loads), min(loads)
        pool: Sequence[EngineLoad] = candidates
        if not (high - low > self.balance_abs and high > self.balance_rel * low):
            matched, holders = tree.match(token_ids, {c.engine_id for c in candidates})
            if holders and matched >= self.cache_threshold * len(token_ids):
                pool = [c for c in candidates if c.engine_id in holders]
        chosen = min(pool, key=lambda c: (c.load, tree.held[c.engine_id], c.kv_use, c.engine_id))
        tree.insert(token_ids, chosen.engine_id, next(self._clock))
        if tree.size > self.max_tree_tokens:
            tree.evict(self.max_tree_tokens * 9 // 10)
        return chosen.engine_id

    def forget(self, engine_id: str) -> None:
        for tree in self._trees.values():
            tree.forget(engine_id)

    def tree(self, model: str) -> PrefixTree | None:
        """The model's tree (for tests and diagnostics), None before its first prompt."""
        return self._trees.get(model)
