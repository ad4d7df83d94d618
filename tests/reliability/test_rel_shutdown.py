"""Shutdown and limits: SIGTERM to the gateway drains, SIGTERM to the engine fails fast,
and --rate-limit answers 429 with Retry-After."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest
from rel_procs import Engine, Gateway

from infer_server.ratelimit import TokenBuckets


def body(max_tokens: int, stream: bool) -> dict:
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }


@pytest.fixture
def engine(tiny, rel_dir):
    eng = Engine(tiny, f"ipc://{rel_dir}/shut.ipc").wait_ready()
    yield eng
    eng.stop()


def read_stream(
    url: str,
    payload: dict,
    lines: list[str],
    first: threading.Event,
    errors: list[Exception] | None = None,
) -> None:
    """Collect the data lines of a stream; a cut stream's error goes to `errors` if given."""
    try:
        with httpx.stream("POST", url, json=payload, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    lines.append(line[6:])
                    first.set()
    except httpx.HTTPError as exc:
        if errors is None:
            raise
        errors.append(exc)


def test_gateway_sigterm_refuses_new_requests_and_lets_in_flight_ones_finish(engine):
    gw = Gateway(engine.endpoint, "--shutdown-timeout", "30").wait_ready()
    url = gw.url + "/v1/chat/completions"
    lines: list[str] = []
    first = threading.Event()
    reader = threading.Thread(target=read_stream, args=(url, body(300, True), lines, first))
    # one persistent connection, opened and used before the drain
    kept = httpx.Client(limits=httpx.Limits(max_connections=1), timeout=10)
    before = kept.get(gw.url + "/v1/models")
    assert before.status_code == 200 and before.headers.get("connection") != "close"
    reader.start()
    assert first.wait(30)
    gw.popen.send_signal(signal.SIGTERM)
    gw.wait_for_line("draining", 10)
    # a new request on the kept-alive connection: 503, and the connection is closed
    r = kept.post(url, json=body(2, False))
    stream = r.extensions["network_stream"]
    assert stream is before.extensions["network_stream"], "the request went on a new connection"
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "shutting_down" and r.headers["retry-after"]
    assert r.headers["connection"] == "close"
    kept.close()
    # a new connection: the listener is still open, and says the same
    r = httpx.post(url, json=body(2, False), timeout=10)
    assert r.status_code == 503 and r.headers["connection"] == "close"
    ready = httpx.get(gw.url + "/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["detail"] == "the gateway is shutting down"
    assert gw.popen.poll() is None and lines[-1:] != ["[DONE]"], "the stream ended early"
    reader.join(60)
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert not any("error" in c for c in chunks)
    assert gw.wait_exit(10) == 0
    assert "unfinished" not in gw.output


def test_gateway_sigterm_stops_waiting_after_the_shutdown_timeout(engine):
    gw = Gateway(engine.endpoint, "--shutdown-timeout", "1").wait_ready()
    lines: list[str] = []
    first = threading.Event()
    url = gw.url + "/v1/chat/completions"
    errors: list[Exception] = []
    reader = threading.Thread(
        target=read_stream, args=(url, body(1500, True), lines, first, errors), daemon=True
    )
    reader.start()
    assert first.wait(30)
    start = time.monotonic()
    gw.popen.send_signal(signal.SIGTERM)
    gw.wait_exit(15)
    assert time.monotonic() - start < 6, "the gateway waited past --shutdown-timeout"
    reader.join(10)
    assert not any('"finish_reason":"length"' in line for line in lines)
    assert errors or lines[-1:] != ["[DONE]"], "the unfinished stream was not cut"


def test_engine_sigterm_fails_running_requests_through_the_gateway_at_once(engine):
    gw = Gateway(engine.endpoint).wait_ready()
    url = gw.url + "/v1/chat/completions"
    try:
        lines: list[str] = []
        first = threading.Event()
        reader = threading.Thread(target=read_stream, args=(url, body(1500, True), lines, first))
        reader.start()
        plain: dict = {}

        def post() -> None:
            r = httpx.post(url, json=body(1500, False), timeout=60)
            plain.update(status=r.status_code, body=r.json(), at=time.monotonic())

        poster = threading.Thread(target=post)
        poster.start()
        assert first.wait(30)
        time.sleep(0.3)
        engine.popen.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        reader.join(10)
        poster.join(10)
        ended = time.monotonic()
        assert lines[-1] == "[DONE]"
        assert json.loads(lines[-2])["error"]["code"] == "shutting_down", (
            gw.output[-3000:],
            engine.output[-2000:],
        )
        assert plain["status"] == 503, (plain, engine.output[-3000:])
        assert plain["body"]["error"]["code"] == "shutting_down"
        assert plain["at"] - sent < 2.0 and ended - sent < 2.5
        assert engine.wait_exit(15) == 0
    finally:
        gw.stop()


def test_rate_limit_per_client_address(engine):
    gw = Gateway(engine.endpoint, "--rate-limit", "3").wait_ready()
    try:
        codes = [httpx.get(gw.url + "/v1/models").status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        r = httpx.post(gw.url + "/v1/chat/completions", json=body(2, False))
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 20
        err = r.json()["error"]
        assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
        assert set(err) == {"message", "type", "param", "code"}
        # health checks are never limited
        assert all(httpx.get(gw.url + p).status_code == 200 for p in ["/health", "/ready"] * 5)
    finally:
        gw.stop()


def test_rate_limit_per_api_key(engine):
    gw = Gateway(engine.endpoint, "--rate-limit", "2", "--api-key", "k1").wait_ready()
    try:
        good = {"Authorization": "Bearer k1"}
        assert [httpx.get(gw.url + "/v1/models", headers=good).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        # a wrong key is refused as unauthenticated, never counted against k1's bucket
        assert httpx.get(gw.url + "/v1/models").status_code == 401
    finally:
        gw.stop()


def test_token_buckets_refill_and_stay_bounded():
    now = [0.0]
    buckets = TokenBuckets(60, max_clients=3, clock=lambda: now[0])  # one per second
    assert [buckets.take("a") for _ in range(60)] == [0.0] * 60
    assert buckets.take("a") == pytest.approx(1.0)
    now[0] += 1.0
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0
    for key in "bcde":
        buckets.take(key)
    assert len(buckets) == 3  # least recently used clients are forgotten
    with pytest.raises(ValueError):
        TokenBuckets(0)
