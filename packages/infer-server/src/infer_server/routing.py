"""Which engine a request goes to: the policies behind `--routing`.

A policy sees each candidate engine as an `EngineLoad` snapshot (only ready
engines that serve the request's model are candidates, and there is at least
one) and returns the `engine_id` of one of them. Invariants:
- `choose` never returns an id that is not among the candidates;
- `forget(engine_id)` drops whatever the policy remembers of that engine (it
  died, or came back with a new epoch and an empty KV cache);
- policies hold no reference to sockets or requests, so they are tested alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EngineLoad:
    """One candidate engine as a policy sees it."""

    engine_id: str
    in_flight: int  # requests the gateway has open on it now
    waiting: int = 0  # from its last Pong
    running: int = 0
    kv_use: float = 0.0  # fraction of KV blocks in use, 0..1

    @property
    def load(self) -> int:
        """The figure load balancing compares: the gateway's own count, which is
        current, or the engine's last report when that is larger."""
        return max(self.in_flight, self.waiting + self.running)


class Router(Protocol):
    def choose(self, model: str, token_ids: Sequence[int], candidates: Sequence[EngineLoad]) -> str:
        """The engine_id of the candidate that should serve this prompt."""
        ...

    def forget(self, engine_id: str) -> None:
        """Drop all state about `engine_id`."""
        ...


class RoundRobin:
    """Each candidate in turn, whatever the load or prompt."""

    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, model: str, token_ids: Sequence[int], candidates: Sequence[EngineLoad]) -> str:
        ordered = sorted(candidates, key=lambda c: c.engine_id)
        return ordered[next(self._turn) % len(ordered)].engine_id

    def forget(self, engine_id: str) -> None:
        pass


class LeastLoaded:
    """The candidate with the smallest load; ties by lower KV use, then id."""

    def choose(self, model: str, token_ids: Sequence[int], candidates: Sequence[EngineLoad]) -> str:
        return least_loaded(candidates).engine_id

    def forget(self, engine_id: str) -> None:
        pass


def least_loaded(candidates: Sequence[EngineLoad]) -> EngineLoad:
    return min(candidates, key=lambda c: (c.load, c.kv_use, c.engine_id))


def make_router(policy: str, **options: float) -> Router:
    """The router for a `--routing` value; ValueError naming the choices otherwise.

    `options` are the thresholds of `cache_aware` (cache_threshold, balance_abs,
    balance_rel, max_tree_tokens; see radix_router.CacheAware); the other
    policies have none and ignore them, so the gateway can pass its settings
    whatever the policy.
    """
    from infer_server.radix_router import CacheAware  # it imports EngineLoad from here

    if policy == "cache_aware":
        return CacheAware(**options)  # type: ignore[arg-type]
    factories = {"least_loaded": LeastLoaded, "round_robin": RoundRobin}
    if policy not in factories:
        names = ", ".join(["cache_aware", *factories])
        raise ValueError(f"unknown routing policy {policy!r}; choose from {names}")
    return factories[policy]()
