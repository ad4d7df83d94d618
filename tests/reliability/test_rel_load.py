"""Load faults: a storm of clients that give up, and overload past the queue capacity."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from rel_engine_probe import EngineProbe
from rel_procs import Engine, Gateway, metrics, pending, prometheus, wait_until


def chat(i: int, max_tokens: int, stream: bool) -> dict:
    content = f"request {i}: " + "word " * (i % 17)
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }


@pytest.fixture
def storm_pair(tiny, rel_dir):
    engine = Engine(
        tiny, f"ipc://{rel_dir}/storm.ipc", "--queue-capacity", "256", "--kv-cache-tokens", "32768"
    ).wait_ready()
    gw = Gateway(engine.endpoint).wait_ready()
    probe = EngineProbe(engine.endpoint)
    yield engine, gw, probe
    probe.close()
    gw.stop()
    engine.stop()


async def give_up_after(
    client: httpx.AsyncClient, url: str, body: dict, after: float, from_first_chunk: bool
) -> int:
    """Stream and drop the connection `after` seconds from the start (or from the first
    chunk, so the request is surely generating in the engine); return chunks read."""
    chunks = 0
    loop = asyncio.get_running_loop()
    give_up = loop.time() + (30.0 if from_first_chunk else after)
    try:
        async with asyncio.timeout_at(give_up) as scope:
            async with client.stream("POST", url, json=body) as r:
                assert r.status_code == 200, (await r.aread()).decode()
                async for _ in r.aiter_lines():
                    chunks += 1
                    if chunks == 1 and from_first_chunk:
                        scope.reschedule(loop.time() + after)
    except TimeoutError:
        pass
    return chunks


def test_disconnect_storm_leaves_nothing_behind(storm_pair):
    engine, gw, probe = storm_pair
    url = gw.url + "/v1/chat/completions"

    async def storm() -> list[int]:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            jobs = [
                give_up_after(client, url, chat(i, 1500, True), 0.5, from_first_chunk=i % 2 == 0)
                for i in range(200)
            ]
            return await asyncio.gather(*jobs)

    chunks = asyncio.run(storm())
    started = probe.metrics().engine.total_requests
    assert sum(c > 1 for c in chunks[::2]) == 100, "half the clients stream before giving up"
    assert started >= 100
    gave_up = time.monotonic()
    # every stream's engine request is aborted as its client goes, not when the garbage
    # collector happens to close a body generator a cancelled send left suspended
    assert wait_until(lambda: pending(gw) == 0, 2.0), f"gateway still waits on {pending(gw)}"

    def drained():
        m = probe.metrics()
        return m if m.kv.running_requests == 0 and m.kv.waiting_requests == 0 else None

    m = wait_until(drained, 5.0)
    assert m, f"engine still busy 5 s after the storm: {probe.metrics().kv}"
    assert time.monotonic() - gave_up < 5.0
    # every block is free or held only by the prefix cache (unlocked, evictable)
    assert m.cache.protected_size == 0
    assert m.kv.used_blocks * m.kv.block_size <= m.cache.total_cached + m.kv.block_size * (
        m.cache.node_count
    )
    assert m.cache.evictable_size == m.cache.total_cached
    assert pending(gw) == 0
    r = httpx.post(url, json=chat(1, 5, False), timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5


def test_a_stream_whose_client_leaves_while_queued_leaves_the_queue(tiny, rel_dir):
    """The gateway waits for a stream's first token before answering; a client that goes
    meanwhile must not keep its request waiting in the engine until its turn comes."""
    engine = Engine(tiny, f"ipc://{rel_dir}/queued.ipc", "--max-running", "1").wait_ready()
    gw = Gateway(engine.endpoint).wait_ready()
    probe = EngineProbe(engine.endpoint)
    url = gw.url + "/v1/chat/completions"

    async def scenario() -> tuple[int, int, float]:
        async with (
            httpx.AsyncClient(timeout=60) as client,
            client.stream("POST", url, json=chat(1, 1500, True)) as running,
        ):
            lines = running.aiter_lines()
            await anext(lines)  # the long request runs; the next one must wait
            queued = await give_up_after(client, url, chat(2, 5, True), 0.5, False)
            left = time.monotonic()
            waiting = await asyncio.to_thread(
                wait_until, lambda: probe.metrics().kv.waiting_requests == 0, 3.0
            )
            took = time.monotonic() - left
            m = probe.metrics().kv
            assert waiting, f"the abandoned request still waits: {m}"
            await anext(lines)  # the first stream goes on
            return queued, m.running_requests, took

    try:
        chunks, running, took = asyncio.run(scenario())
        assert chunks == 0 and running == 1
        print(f"the queued request left the engine {took:.2f}s after its client")
        assert wait_until(lambda: "POST /v1/chat/completions status=499" in gw.output, 5)
        assert wait_until(lambda: probe.metrics().kv.running_requests == 0, 5)
        assert pending(gw) == 0
    finally:
        probe.close()
        gw.stop()
        engine.stop()


@pytest.fixture
def small_queue_pair(tiny, rel_dir):
    engine = Engine(
        tiny, f"ipc://{rel_dir}/over.ipc", "--queue-capacity", "50", "--max-running", "8"
    ).wait_ready()
    gw = Gateway(engine.endpoint).wait_ready()
    yield engine, gw
    gw.stop()
    engine.stop()


async def one(client: httpx.AsyncClient, url: str, i: int) -> tuple[int, float, bool, dict]:
    """Status, seconds from the request's last byte written to the response's head read,
    whether the answer was complete, and the error (if any)."""
    stream = i % 2 == 0
    marks: dict[str, float] = {}

    async def trace(event: str, info: dict) -> None:
        marks[event] = time.monotonic()

    def took() -> float:
        return (
            marks["http11.receive_response_headers.complete"]
            - marks["http11.send_request_body.complete"]
        )

    ext = {"trace": trace}
    if not stream:
        r = await client.post(url, json=chat(i, 24, False), extensions=ext)
        body = r.json()
        complete = r.status_code == 200 and body["usage"]["completion_tokens"] == 24
        return r.status_code, took(), complete, {**r.headers, **body}
    request = client.build_request("POST", url, json=chat(i, 24, True), extensions=ext)
    r = await client.send(request, stream=True)
    try:
        if r.status_code != 200:
            body = (await r.aread()).decode()
            return r.status_code, took(), False, {**r.headers, "body": body}
        lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    finally:
        await r.aclose()
    complete = lines[-1] == "data: [DONE]" and '"finish_reason":"length"' in lines[-2]
    return 200, took(), complete, {}


def refusal_counts(gw: Gateway) -> dict[str, float]:
    p = prometheus(gw)
    hist = "infer_gateway_refusal_latency_seconds"
    return {
        "gateway": p.get('infer_gateway_overload_refusals_total{by="gateway"}', 0.0),
        "engine": p.get('infer_gateway_overload_refusals_total{by="engine"}', 0.0),
        "timed": p.get(f"{hist}_count", 0.0),
        "within_1s": p.get(f'{hist}_bucket{{le="1.0"}}', 0.0),
        "within_250ms": p.get(f'{hist}_bucket{{le="0.25"}}', 0.0),
    }


def test_overload_gives_answers_or_quick_503s_and_the_counts_add_up(small_queue_pair):
    engine, gw = small_queue_pair
    url = gw.url + "/v1/chat/completions"
    before = metrics(gw)["engine"]

    async def flood():
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            return await asyncio.gather(*[one(client, url, i) for i in range(300)])

    results = asyncio.run(flood())
    statuses = [s for s, *_ in results]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    assert all(complete for _, _, complete, _ in ok)
    assert refused, "300 requests against 8 running + 50 waiting were all served?"
    counts = refusal_counts(gw)
    slowest = max(r[1] for r in refused)
    print(f"served {len(ok)}, refused {len(refused)} {counts}, slowest send->503 {slowest:.2f}s")
    for _, _, _, extra in refused:
        assert extra.get("retry-after"), extra
        assert "overloaded" in str(extra), extra
    # refused -> 503: from the engine's overloaded answer reaching the gateway to the 503
    # starting, every one within the 1 s (typically a few ms); refusals made by
    # the gateway's own gate (the engine said full a moment ago) take no time at all.
    assert counts["gateway"] + counts["engine"] == len(refused)
    assert counts["timed"] == counts["engine"]
    assert counts["within_1s"] == counts["timed"], counts
    # send -> 503, from the request's last byte written to the 503's head read, also
    # counts the gateway taking up each of 300 requests at once on 2 cores shared with
    # the engine and this client: at most 0.66 to 0.82 s seen with the load average near
    # 5; the bound leaves room for a slower CI machine. (Timed from the client coroutine's
    # start instead, it was 1 to 3 s: mostly this client opening 300 connections.)
    assert slowest < 2.0, f"a refusal took {slowest:.2f}s from sending"
    after = metrics(gw)["engine"]
    engine_refused = int(counts["engine"])
    assert after["total_requests"] - before["total_requests"] == len(ok) + engine_refused
    assert after["completed_requests"] - before["completed_requests"] == len(ok)
    assert after["failed_requests"] - before["failed_requests"] == engine_refused
    assert pending(gw) == 0
