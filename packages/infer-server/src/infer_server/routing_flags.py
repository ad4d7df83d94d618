"""The gateway flags of `--routing cache_aware`'s thresholds (radix_router.CacheAware).

A bad value (from the flag or its environment variable) stops the gateway
with argparse's message, which names the flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from infer_protocol.defaults import non_negative_int, positive_int
from infer_server.radix_router import (
    DEFAULT_BALANCE_ABS,
    DEFAULT_BALANCE_REL,
    DEFAULT_CACHE_THRESHOLD,
    DEFAULT_MAX_TREE_TOKENS,
)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def add_routing_thresholds(p: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The thresholds of `--routing cache_aware` (radix_router.CacheAware)."""
    p.add_argument(
        "--routing-cache-threshold",
        type=_fraction,
        default=env.get("ROUTING_CACHE_THRESHOLD") or str(DEFAULT_CACHE_THRESHOLD),
        help="cache_aware: share of the prompt an engine must hold as a prefix to be chosen "
        f"for it (ROUTING_CACHE_THRESHOLD; default {DEFAULT_CACHE_THRESHOLD})",
    )
    p.add_argument(
        "--routing-balance-abs",
        type=non_negative_int,
        default=env.get("ROUTING_BALANCE_ABS") or str(DEFAULT_BALANCE_ABS),
        help="cache_aware: loads are imbalanced (least loaded wins) when max - min exceeds "
        f"this and max > --routing-balance-rel * min (ROUTING_BALANCE_ABS; default "
        f"{DEFAULT_BALANCE_ABS})",
    )
    p.add_argument(
        "--routing-balance-rel",
        type=_ratio,
        default=env.get("ROUTING_BALANCE_REL") or str(DEFAULT_BALANCE_REL),
        help=f"cache_aware: see --routing-balance-abs (ROUTING_BALANCE_REL; default "
        f"{DEFAULT_BALANCE_REL})",
    )
    p.add_argument(
        "--routing-max-tree-tokens",
        type=positive_int,
        default=env.get("ROUTING_MAX_TREE_TOKENS") or str(DEFAULT_MAX_TREE_TOKENS),
        help="cache_aware: tokens of routed prompts remembered per model before the least "
        f"recently used are forgotten (ROUTING_MAX_TREE_TOKENS; default {DEFAULT_MAX_TREE_TOKENS})",
    )
