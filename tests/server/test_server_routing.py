"""The routing policies alone (no processes): cache-aware prefix affinity, load
fallback, forget, LRU bounds, and the tree's invariants under random use."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infer_server.config import parse_settings
from infer_server.radix_router import CacheAware, PrefixTree
from infer_server.routing import EngineLoad, LeastLoaded, RoundRobin, make_router

MODEL = "m"
IDLE = [EngineLoad("a", 0), EngineLoad("b", 0)]


def prompt(seed: int, length: int, prefix: list[int] | None = None) -> list[int]:
    rng = random.Random(seed)
    return list(prefix or []) + [rng.randrange(50_000) for _ in range(length)]


def check_invariants(tree: PrefixTree) -> None:
    """size and held match the edges; tenancy is prefix-closed; no tenantless node."""
    size, held = 0, Counter()
    stack = [tree.root]
    while stack:
        node = stack.pop()
        if node is not tree.root:
            assert node.tenants, "a node without tenants stayed in the tree"
            assert node.tokens, "an empty edge"
            assert set(node.tenants) <= set(node.parent.tenants), "tenancy not prefix-closed"
            assert node.parent.children[node.tokens[0]] is node
        size += len(node.tokens)
        for engine in node.tenants:
            held[engine] += len(node.tokens)
        stack.extend(node.children.values())
    assert tree.size == size
    assert +tree.held == +held


def test_shared_long_prefix_lands_on_one_engine():
    router = CacheAware()
    system = prompt(0, 400)
    chosen = [router.choose(MODEL, prompt(i + 1, 20, system), IDLE) for i in range(40)]
    assert len(set(chosen)) == 1
    check_invariants(router.tree(MODEL))


def test_disjoint_prefixes_spread_over_both_engines():
    router = CacheAware()
    chosen = Counter(router.choose(MODEL, prompt(i, 200), IDLE) for i in range(40))
    # equal loads: new prefixes go to the engine holding fewer tokens, so they alternate
    assert chosen == {"a": 20, "b": 20}


def test_a_conversation_keeps_its_engine():
    """Each turn resends the history: every turn of a conversation goes where its first did."""
    router = CacheAware()
    homes: dict[int, set[str]] = {c: set() for c in range(6)}
    history = {c: prompt(100 + c, 60) for c in range(6)}
    for turn in range(5):
        for c in range(6):
            homes[c].add(router.choose(MODEL, history[c], IDLE))
            history[c] = history[c] + prompt(1000 * turn + c, 30)
    assert all(len(h) == 1 for h in homes.values())
    assert {next(iter(h)) for h in homes.values()} == {"a", "b"}


def test_imbalance_falls_back_to_the_least_loaded():
    router = CacheAware(balance_abs=32, balance_rel=1.5)
    system = prompt(0, 400)
    first = router.choose(MODEL, prompt(1, 20, system), IDLE)
    other = "b" if first == "a" else "a"
    # a difference within balance_abs keeps the affinity
    near = [EngineLoad(first, 30), EngineLoad(other, 2)]
    assert router.choose(MODEL, prompt(2, 20, system), near) == first
    busy = [EngineLoad(first, 40), EngineLoad(other, 2)]
    assert router.choose(MODEL, prompt(3, 20, system), busy) == other
    # the fallback engine now holds the prefix too: with both idle again, the
    # prefix goes to either holder, never to an engine that lacks it
    third = [*IDLE, EngineLoad("c", 0)]
    assert router.choose(MODEL, prompt(4, 20, system), third) in {"a", "b"}


def test_imbalance_needs_both_thresholds():
    """40 vs 30 is past balance_abs=5 but not past balance_rel=2: affinity holds."""
    router = CacheAware(balance_abs=5, balance_rel=2.0)
    system = prompt(0, 300)
    first = router.choose(MODEL, prompt(1, 10, system), IDLE)
    other = "b" if first == "a" else "a"
    loads = [EngineLoad(first, 40), EngineLoad(other, 30)]
    assert router.choose(MODEL, prompt(2, 10, system), loads) == first


def test_load_counts_the_engines_own_report():
    """EngineLoad.load takes waiting + running from the Pong when it exceeds in_flight."""
    router = CacheAware(balance_abs=10, balance_rel=1.5)
    system = prompt(0, 300)
    first = router.choose(MODEL, prompt(1, 10, system), IDLE)
    other = "b" if first == "a" else "a"
    loads = [EngineLoad(first, 0, waiting=30, running=8), EngineLoad(other, 1)]
    assert router.choose(MODEL, prompt(2, 10, system), loads) == other


def test_a_match_below_the_threshold_goes_to_the_least_loaded():
    router = CacheAware(cache_threshold=0.5)
    head = prompt(0, 40)
    first = router.choose(MODEL, head + prompt(1, 10), IDLE)
    other = "b" if first == "a" else "a"
    loads = [EngineLoad(first, 3), EngineLoad(other, 1)]
    # 40 of 140 tokens matched (< 0.5): least loaded, whatever the match
    assert router.choose(MODEL, head + prompt(2, 100), loads) == other
    # 48 of 50 matched (>= 0.5) by the first engine only (the other one holds
    # just the 40-token head now): the holder, although it is busier
    assert router.choose(MODEL, head + prompt(1, 10)[:8] + [7, 7], loads) == first


def test_the_least_loaded_holder_wins_among_several():
    router = CacheAware()
    system = prompt(0, 300)
    engines = [EngineLoad(e, 0) for e in "abc"]
    for i, e in enumerate("abc"):  # each engine is made to hold the prefix
        only = [EngineLoad(e, 0)]
        router.choose(MODEL, prompt(10 + i, 5, system), only)
    loads = [EngineLoad("a", 5), EngineLoad("b", 1), EngineLoad("c", 3)]
    assert router.choose(MODEL, prompt(99, 5, system), loads) == "b"
    assert router.tree(MODEL).match(prompt(98, 5, system), {"a", "b", "c"})[1] == set("abc")
    assert router.choose(MODEL, prompt(97, 5, system), engines[:1]) == "a"


def test_forget_removes_the_tenant_everywhere():
    router = CacheAware()
    system = prompt(0, 400)
    for model in (MODEL, "other"):
        router.choose(model, prompt(1, 20, system), [EngineLoad("a", 0)])
        router.choose(model, prompt(2, 20), [EngineLoad("b", 0)])
    router.forget("a")
    for model in (MODEL, "other"):
        tree = router.tree(model)
        check_invariants(tree)
        assert "a" not in tree.held
        assert tree.match(prompt(1, 20, system), {"a", "b"}) == (0, set())
        assert tree.size == 20  # only b's prompt is left
    # the prefix that a held now goes by load: to b when a is busier
    loads = [EngineLoad("a", 2), EngineLoad("b", 0)]
    assert router.choose(MODEL, prompt(3, 20, system), loads) == "b"


def test_lru_eviction_bounds_the_tree_and_keeps_recent_prompts():
    router = CacheAware(max_tree_tokens=5_000)
    old = prompt(0, 500)
    router.choose(MODEL, old, IDLE)
    recent = None
    for i in range(1, 60):
        recent = prompt(i, 500)
        router.choose(MODEL, recent, IDLE)
        tree = router.tree(MODEL)
        assert tree.size <= 5_000
    check_invariants(tree)
    engines = {"a", "b"}
    assert tree.match(old, engines) == (0, set()), "the least recently used prompt stayed"
    assert tree.match(recent, engines)[0] == 500, "the newest prompt was evicted"


def test_eviction_keeps_a_prefix_that_is_still_used():
    """A shared prefix refreshed by every prompt outlives the old tails beneath it."""
    router = CacheAware(max_tree_tokens=3_000)
    system = prompt(0, 1_000)
    one = [EngineLoad("a", 0)]
    for i in range(40):
        router.choose(MODEL, prompt(i + 1, 200, system), one)
    tree = router.tree(MODEL)
    check_invariants(tree)
    assert tree.size <= 3_000
    assert tree.match(system + [1, 2, 3], {"a"})[0] == 1_000


def test_choose_returns_a_candidate_and_ignores_other_tenants():
    router = CacheAware()
    system = prompt(0, 300)
    router.choose(MODEL, prompt(1, 10, system), [EngineLoad("gone", 0)])
    only = [EngineLoad("c", 7)]
    assert router.choose(MODEL, prompt(2, 10, system), only) == "c"


def test_an_empty_prompt_goes_to_the_least_loaded():
    router = CacheAware()
    assert router.choose(MODEL, [], [EngineLoad("a", 3), EngineLoad("b", 1)]) == "b"


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"cache_threshold": 1.5}, "cache_threshold"),
        ({"balance_abs": -1}, "balance_abs"),
        ({"balance_rel": 0.5}, "balance_rel"),
        ({"max_tree_tokens": 0}, "max_tree_tokens"),
    ],
)
def test_bad_thresholds_are_refused_by_name(options, word):
    with pytest.raises(ValueError, match=word):
        CacheAware(**options)


def test_make_router_builds_each_policy():
    router = make_router("cache_aware", cache_threshold=0.9, balance_abs=3)
    assert isinstance(router, CacheAware)
    assert (router.cache_threshold, router.balance_abs) == (0.9, 3)
    assert isinstance(make_router("round_robin", cache_threshold=0.9), RoundRobin)
    assert isinstance(make_router("least_loaded"), LeastLoaded)
    with pytest.raises(ValueError, match="cache_aware, least_loaded, round_robin"):
        make_router("random")


def test_threshold_flags_reach_the_policy():
    settings_ = parse_settings(
        [
            "--routing-cache-threshold",
            "0.75",
            "--routing-balance-abs",
            "8",
            "--routing-balance-rel",
            "2",
            "--routing-max-tree-tokens",
            "4096",
        ],
        {},
    )
    router = make_router("cache_aware", **settings_.router_options)
    got = (router.cache_threshold, router.balance_abs, router.balance_rel, router.max_tree_tokens)
    assert got == (0.75, 8, 2.0, 4096)
    env = {"ROUTING_CACHE_THRESHOLD": "0.1", "ROUTING_MAX_TREE_TOKENS": "99"}
    from_env = parse_settings([], env)
    assert (from_env.routing_cache_threshold, from_env.routing_max_tree_tokens) == (0.1, 99)
    defaults = make_router("cache_aware", **parse_settings([], {}).router_options)
    assert (defaults.cache_threshold, defaults.balance_abs, defaults.balance_rel) == (0.3, 64, 1.5)
    assert defaults.max_tree_tokens == 2**20


@pytest.mark.parametrize(
    ("argv", "env", "flag"),
    [
        (["--routing-cache-threshold", "1.2"], {}, "--routing-cache-threshold"),
        (["--routing-cache-threshold", "lots"], {}, "--routing-cache-threshold"),
        (["--routing-balance-abs", "-3"], {}, "--routing-balance-abs"),
        (["--routing-balance-rel", "0.9"], {}, "--routing-balance-rel"),
        (["--routing-max-tree-tokens", "0"], {}, "--routing-max-tree-tokens"),
        ([], {"ROUTING_BALANCE_REL": "0.5"}, "--routing-balance-rel"),
    ],
)
def test_bad_threshold_flags_name_the_flag(argv, env, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_settings(argv, env)
    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err


_ops = st.lists(
    st.tuples(
        st.sampled_from(["choose", "choose", "choose", "forget"]),
        st.integers(0, 5),  # which stem
        st.lists(st.integers(0, 3), max_size=12),  # tail tokens
        st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True),  # candidates
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(_ops, st.integers(20, 200))
def test_random_use_keeps_the_invariants(ops, limit):
    router = CacheAware(max_tree_tokens=limit, balance_abs=2)
    stems = [prompt(s, 8) for s in range(6)]
    for op, stem, tail, ids in ops:
        names = [f"e{i}" for i in ids]
        if op == "forget":
            router.forget(names[0])
            continue
        loads = [EngineLoad(n, (i * 7) % 5) for i, n in enumerate(names)]
        assert router.choose(MODEL, stems[stem] + tail, loads) in names
        tree = router.tree(MODEL)
        assert tree.size <= limit
        check_invariants(tree)
