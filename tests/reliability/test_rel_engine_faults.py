"""Engine faults for real: SIGKILL with streams in flight, SIGSTOP (hang) and SIGCONT."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest
from rel_procs import Engine, Gateway, pending, wait_until

MESSAGES = [{"role": "user", "content": "tell me a long story"}]
LONG = {"model": "tiny", "messages": MESSAGES, "max_tokens": 1500, "ignore_eos": True}


class Outcome:
    """What one client saw: status, SSE events, [DONE], and when it ended."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.events: list[dict] = []
        self.done = False
        self.body: dict | None = None
        self.ended_at = 0.0
        self.started = threading.Event()


def stream(url: str, out: Outcome) -> None:
    with httpx.stream("POST", url, json={**LONG, "stream": True}, timeout=60) as r:
        out.status = r.status_code
        for line in r.iter_lines():
            if line == "data: [DONE]":
                out.done = True
            elif line.startswith("data: "):
                out.events.append(json.loads(line[6:]))
                if len(out.events) >= 2:
                    out.started.set()
    out.ended_at = time.monotonic()


def plain(url: str, out: Outcome) -> None:
    out.started.set()
    r = httpx.post(url, json=LONG, timeout=60)
    out.status, out.body = r.status_code, r.json()
    out.ended_at = time.monotonic()


def launch(gw: Gateway, streams: int, plains: int) -> tuple[list[Outcome], list[threading.Thread]]:
    url = gw.url + "/v1/chat/completions"
    outs, threads = [], []
    for target in [stream] * streams + [plain] * plains:
        out = Outcome()
        t = threading.Thread(target=target, args=(url, out), daemon=True)
        t.start()
        outs.append(out)
        threads.append(t)
    for out in outs:
        assert out.started.wait(60), "a request never started"
    return outs, threads


@pytest.fixture
def pair(tiny, rel_dir):
    """An engine and a gateway; the test may replace state['engine']."""
    engine = Engine(tiny, f"ipc://{rel_dir}/fault.ipc", "--kv-cache-tokens", "16384").wait_ready()
    state = {"engine": engine, "gateway": None}
    yield state
    if state["gateway"] is not None:
        state["gateway"].stop()
    state["engine"].stop()


def test_killed_engine_ends_every_request_within_2s_and_a_new_engine_serves(pair):
    engine = pair["engine"]
    gw = pair["gateway"] = Gateway(engine.endpoint, "--engine-ping-timeout", "1.5").wait_ready()
    outs, threads = launch(gw, streams=4, plains=2)
    time.sleep(0.3)  # the non-streamed ones are in the engine too
    os.kill(engine.popen.pid, signal.SIGKILL)
    killed = time.monotonic()
    for t in threads:
        t.join(10)
    for out in outs:
        assert out.ended_at - killed < 2.0, f"ended {out.ended_at - killed:.2f}s after the kill"
        if out.body is None:  # streamed: 200, some content, one error event, then [DONE]
            assert out.status == 200 and out.done
            assert out.events[-1]["error"]["code"] == "engine_unavailable"
        else:
            assert out.status == 502 and out.body["error"]["code"] == "engine_unavailable"
    assert httpx.get(gw.url + "/health").status_code == 200
    ready = httpx.get(gw.url + "/ready")
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert pending(gw) == 0
    assert httpx.post(gw.url + "/v1/chat/completions", json=LONG).status_code == 502

    engine.popen.wait(10)
    pair["engine"] = Engine(engine.model, engine.endpoint, *engine.extra).wait_ready()
    gw.wait_ready(60)
    body = {**LONG, "max_tokens": 4}
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4


def test_hung_engine_gives_504_at_the_request_timeout_and_sigcont_recovers(pair):
    engine = pair["engine"]
    gw = pair["gateway"] = Gateway(
        engine.endpoint, "--request-timeout", "2", "--engine-ping-timeout", "3"
    ).wait_ready()
    outs, threads = launch(gw, streams=2, plains=2)
    os.kill(engine.popen.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        for t in threads:
            t.join(15)
        for out in outs:
            # nothing arrives for the request timeout (2 s): the request ends there
            assert 1.8 < out.ended_at - stopped < 4.0, f"{out.ended_at - stopped:.2f}s"
            if out.body is None:
                assert out.status == 200 and out.done
                assert out.events[-1]["error"]["code"] == "engine_timeout"
            else:
                assert out.status == 504 and out.body["error"]["code"] == "engine_timeout"
        # /ready turns 503 once the heartbeat (3 s) has gone unanswered
        went_down = wait_until(lambda: httpx.get(gw.url + "/ready").status_code == 503, 6)
        assert went_down and time.monotonic() - stopped < 6.0
        r = httpx.post(gw.url + "/v1/chat/completions", json=LONG, timeout=10)
        assert r.status_code == 502
    finally:
        os.kill(engine.popen.pid, signal.SIGCONT)
    gw.wait_ready(30)
    body = {**LONG, "max_tokens": 4}
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    assert pending(gw) == 0
