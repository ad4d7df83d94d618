"""Cache-aware routing through the real gateway: two tiny engines (one thread each),
the gateway's own per-engine counts in /v1/metrics say where requests went.

Two gateways share the engines: one with the default thresholds, one that sees
an imbalance as soon as one engine has 2 more requests open than the other.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from server_procs import Engine, Gateway

from infer.bench.prompts import WORDS

ONE_THREAD = ("--threads", "1", "--kv-cache-tokens", "8192")


def text(seed: str, words: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def routed(gw: Gateway) -> dict[str, int]:
    body = httpx.get(gw.url + "/v1/metrics", timeout=10).json()
    return {e["id"]: e["requests_routed"] for e in body["engines"]}


def grew(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


@pytest.fixture(scope="module")
def engines(tiny_model: str, run_dir) -> Iterator[list[Engine]]:
    pair = [
        Engine(tiny_model, f"ipc://{run_dir}/ra.ipc", *ONE_THREAD, "--engine-id", "a"),
        Engine(tiny_model, f"ipc://{run_dir}/rb.ipc", *ONE_THREAD, "--engine-id", "b"),
    ]
    try:
        yield [e.wait_ready() for e in pair]
    finally:
        for engine in pair:
            engine.stop()


@pytest.fixture(scope="module")
def gateway(engines: list[Engine]) -> Iterator[Gateway]:
    gw = Gateway(engines[0].endpoint, "--engine-endpoint", engines[1].endpoint)
    yield gw.wait_ready()
    gw.stop()


@pytest.fixture(scope="module")
def touchy_gateway(engines: list[Engine]) -> Iterator[Gateway]:
    gw = Gateway(
        engines[0].endpoint,
        "--engine-endpoint",
        engines[1].endpoint,
        "--routing-balance-abs",
        "1",
        "--routing-balance-rel",
        "1.5",
    )
    yield gw.wait_ready()
    gw.stop()


def complete(gw: Gateway, prompt: str, max_tokens: int = 2, ignore_eos: bool = False) -> None:
    extra = {"ignore_eos": True} if ignore_eos else None
    r = gw.openai().completions.create(
        model="tiny", prompt=prompt, max_tokens=max_tokens, extra_body=extra
    )
    assert r.choices[0].finish_reason in ("length", "stop")
    assert not ignore_eos or r.usage.completion_tokens == max_tokens


def test_forty_prompts_with_a_long_shared_prefix_land_on_one_engine(gateway: Gateway):
    system = text("shared", 300)
    before = routed(gateway)
    for i in range(40):
        complete(gateway, f"{system}\nQuestion {i}: {text(f'q{i}', 10)}")
    counts = grew(before, routed(gateway))
    assert sorted(counts.values()) == [0, 40], counts


def test_forty_disjoint_prompts_use_both_engines(gateway: Gateway):
    before = routed(gateway)
    for i in range(40):
        complete(gateway, f"{i} {text(f'disjoint{i}', 150)}")
    counts = grew(before, routed(gateway))
    assert sum(counts.values()) == 40 and min(counts.values()) >= 10, counts


def idle(gw: Gateway, timeout: float = 15) -> None:
    """Wait until every engine's last report (its Pong) says nothing runs or waits: the
    engines are shared by both gateways, and a report taken during the other gateway's
    burst would still count as load here (`EngineLoad.load` takes the larger figure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engines = httpx.get(gw.url + "/v1/metrics", timeout=10).json()["engines"]
        if all(e["running"] == 0 and e["waiting"] == 0 for e in engines):
            return
        time.sleep(0.2)
    raise AssertionError(f"engines still report load after {timeout}s: {engines}")


def burst(gw: Gateway, seed: str) -> dict[str, int]:
    """8 concurrent long requests sharing a prefix; how many each engine got.

    Each runs exactly 200 tokens (ignore_eos) and all 8 leave together (a barrier), so
    they are open at once on any machine; the engines' reports are idle first."""
    system = text(seed, 300)
    idle(gw)
    before = routed(gw)
    start = threading.Barrier(8)

    def one(i: int) -> None:
        start.wait(timeout=30)
        complete(gw, f"{system}\n{i}: {text(seed + str(i), 5)}", 200, ignore_eos=True)

    with ThreadPoolExecutor(8) as pool:
        for job in [pool.submit(one, i) for i in range(8)]:
            job.result()
    return grew(before, routed(gw))


def test_a_forced_imbalance_falls_back_to_the_least_loaded(
    gateway: Gateway, touchy_gateway: Gateway
):
    # default thresholds (imbalance past 64 requests): the burst follows its prefix
    assert sorted(burst(gateway, "burst-default").values()) == [0, 8]
    # imbalance past 1 request and 1.5x: the burst spills over to the idle engine
    counts = burst(touchy_gateway, "burst-touchy")
    assert sum(counts.values()) == 8 and min(counts.values()) >= 1, counts
