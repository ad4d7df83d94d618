"""Engine faults for real: a stopped engine (SIGSTOP), a killed and restarted one."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import openai
import pytest
from server_procs import Engine, Gateway, token_counters

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def engine_and_gateway(tiny_model, run_dir):
    engine = Engine(tiny_model, f"ipc://{run_dir}/fault.ipc").wait_ready()
    gw = Gateway(engine.endpoint, "--engine-ping-timeout", "1.5").wait_ready()
    state = {"engine": engine}
    yield state, gw
    gw.stop()
    state["engine"].stop()


def stream_until_end(gw: Gateway, body: dict, after_first) -> tuple[list[dict], float]:
    """Stream a chat completion; call after_first() once the first content arrives."""
    events, called, t_called = [], False, 0.0
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events.append(json.loads(line[6:]))
            if not called and len(events) >= 2:
                called, t_called = True, time.monotonic()
                after_first()
    return events, time.monotonic() - t_called


def test_stopped_engine_gives_502_fast_and_a_restarted_one_is_used(engine_and_gateway):
    state, gw = engine_and_gateway
    engine = state["engine"]
    client = gw.openai()
    assert client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2).choices
    before = token_counters(gw)

    body = {
        "model": "tiny",
        "messages": MESSAGES,
        "max_tokens": 1500,
        "ignore_eos": True,
        "stream": True,
    }
    events, waited = stream_until_end(gw, body, lambda: os.kill(engine.popen.pid, signal.SIGSTOP))
    assert events[-1]["error"]["code"] == "engine_unavailable"
    assert waited < 6  # heartbeat timeout 1.5 s, not the 30 s request timeout
    # a mid-stream error still counts what was generated (at least one token per text chunk)
    texts = [e for e in events if e.get("choices") and e["choices"][0]["delta"].get("content")]
    prompt, generated = (a - b for a, b in zip(token_counters(gw), before, strict=True))
    assert prompt > 0 and generated >= len(texts) > 0
    assert f"completion_tokens={generated} " in gw.output  # the access log line agrees

    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
    assert info.value.status_code == 502 and time.monotonic() - start < 3
    ready = httpx.get(gw.url + "/ready")
    assert ready.status_code == 503 and ready.json()["engine_connected"] is False

    os.kill(engine.popen.pid, signal.SIGKILL)
    engine.popen.wait(10)
    state["engine"] = engine = Engine(engine.model, engine.endpoint).wait_ready()
    gw.wait_ready(60)
    out = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=3, extra_body={"ignore_eos": True}
    )
    assert out.usage.completion_tokens == 3
