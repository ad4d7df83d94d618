"""Every 4xx the issue lists, overload (503 + Retry-After), engine timeout (504), API key."""

from __future__ import annotations

import asyncio
import sys
import time

import httpx
import openai
import pytest
from server_procs import Engine, Gateway, Proc

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = {"model": "tiny", "messages": MESSAGES, "max_tokens": 2}
KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}

# The strict engine loses (never answers, never runs) a GenerateRequest whose seed is
# LOST_SEED: a fault a release cannot produce, injected into the real engine. Everything
# else it serves normally.
LOST_SEED = 4242
LOSSY_ENGINE = f"""
import sys
from infer_protocol import GenerateRequest
from infer_scheduler import server
plain = server.EngineServer._dispatch
def lossy(self, envelope, msg):
    if isinstance(msg, GenerateRequest) and msg.sampling.seed == {LOST_SEED}:
        return
    plain(self, envelope, msg)
server.EngineServer._dispatch = lossy
from infer_scheduler.cli import main
sys.exit(main())
"""


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert isinstance(body["message"], str) and body["message"]
    return body


def post(gw: Gateway, path: str, **kw) -> httpx.Response:
    return httpx.post(gw.url + path, timeout=60, **kw)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "temperature": "hot"}, "temperature"),
        ({**CHAT, "temperature": 3}, "temperature"),
        ({**CHAT, "max_tokens": -1}, "max_tokens"),
        ({**CHAT, "n": 0}, "n"),
        ({**CHAT, "top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({**CHAT, "messages": []}, "messages"),
        ({**CHAT, "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({**CHAT, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({**CHAT, "stop": [3]}, "stop"),
        ({"messages": MESSAGES}, "model"),
    ],
)
def test_bad_chat_requests_are_400_with_param(tiny_gateway, body, param):
    assert error(post(tiny_gateway, "/v1/chat/completions", json=body), 400)["param"] == param


def test_bad_json_and_content_type_are_400(tiny_gateway):
    e = error(
        post(
            tiny_gateway,
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        400,
    )
    assert e["code"] == "invalid_json"
    e = error(
        post(
            tiny_gateway,
            "/v1/chat/completions",
            content=b"{}",
            headers={"content-type": "text/plain"},
        ),
        400,
    )
    assert e["code"] == "invalid_content_type"
    error(post(tiny_gateway, "/v1/completions", json=[1, 2]), 400)
    error(post(tiny_gateway, "/v1/completions", json={"model": "tiny", "prompt": [70000]}), 400)
    error(post(tiny_gateway, "/tokenize", json={"prompt": 5}), 400)
    error(post(tiny_gateway, "/detokenize", json={"tokens": [-1]}), 400)


def test_context_overflow_names_the_numbers(tiny_gateway):
    client = tiny_gateway.openai()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5000)
    e = info.value.body
    prompt = httpx.post(tiny_gateway.url + "/tokenize", json={"messages": MESSAGES}).json()["count"]
    assert e["code"] == "context_length_exceeded"
    assert e["message"].startswith(
        f"This model's maximum context length is 2048 tokens. However, you requested {prompt + 5000} "
        f"tokens ({prompt} in the messages, 5000 in the completion)."
    )
    long_prompt = "hello " * 2100
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt=long_prompt)
    assert "in the prompt" in info.value.body["message"]


def test_unknown_model_and_route(tiny_gateway):
    with pytest.raises(openai.NotFoundError) as info:
        tiny_gateway.openai().chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert info.value.body["param"] == "model" and info.value.body["code"] == "model_not_found"
    error(post(tiny_gateway, "/v1/completions", json={"model": "nope", "prompt": "x"}), 404)
    error(httpx.get(tiny_gateway.url + "/v1/nothing"), 404)
    error(httpx.get(tiny_gateway.url + "/v1/chat/completions"), 405)


class LossyEngine(Engine):
    """The real infer-scheduler, run by this interpreter with LOSSY_ENGINE's one fault."""

    def __init__(self, model: str, endpoint: str, *extra: str) -> None:
        self.model, self.endpoint, self.extra = model, endpoint, extra
        argv = [sys.executable, "-c", LOSSY_ENGINE, "--model", model, "--endpoint", endpoint]
        Proc.__init__(self, [*argv, "--device", "cpu", "--dtype", "float32", *extra], "engine")


@pytest.fixture(scope="module")
def strict(run_dir):
    """One running request at a time, one waiting; key required; small bodies; short timeout.

    Its tiny model has a long context, so that one request can hold the running slot for
    far longer than the 3 s timeout (the engine makes ~500 tokens/s of the tiny model).
    """
    from infer_worker.testing import write_tiny_llama

    model = str(write_tiny_llama(run_dir / "long" / "tiny", context_length=32768))
    engine = LossyEngine(
        model, f"ipc://{run_dir}/strict.ipc", "--max-running", "1", "--queue-capacity", "1"
    ).wait_ready()
    gw = Gateway(
        engine.endpoint,
        *(
            "--api-key",
            KEY,
            "--max-body-bytes",
            "4096",
            "--served-model-name",
            "alias",
            "--request-timeout",
            "3",
        ),
    ).wait_ready()
    yield gw
    gw.stop()
    engine.stop()


def test_api_key_is_required_except_on_health_and_ready(strict):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        e = error(httpx.get(strict.url + "/v1/models", headers=headers), 401)
        assert e["code"] == "invalid_api_key"
    error(httpx.get(strict.url + "/metrics"), 401)
    assert httpx.get(strict.url + "/health").status_code == 200
    assert httpx.get(strict.url + "/ready").status_code == 200
    assert httpx.get(strict.url + "/").status_code == 200  # the web UI page holds no data
    with pytest.raises(openai.AuthenticationError):
        strict.openai(api_key="wrong").models.list()
    models = strict.openai(api_key=KEY).models.list()
    assert [m.id for m in models.data] == ["tiny", "alias"]
    out = strict.openai(api_key=KEY).chat.completions.create(
        model="alias", messages=MESSAGES, max_tokens=2
    )
    assert out.model == "alias" and out.choices[0].message.content is not None


def test_cors_preflight_any_origin(strict):
    r = httpx.options(
        strict.url + "/v1/chat/completions",
        headers={"Origin": "http://example.com", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] in ("*", "http://example.com")
    assert "access-control-allow-credentials" not in r.headers


def test_body_over_limit_is_413(strict):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    e = error(httpx.post(strict.url + "/v1/chat/completions", json=big, headers=AUTH), 413)
    assert "4096" in e["message"]


def test_overloaded_is_503_and_a_queued_request_waits_past_the_timeout(strict):
    """--request-timeout is 3 s: B waits its turn far longer and still gets its answer."""
    url = strict.url + "/v1/chat/completions"
    # ~60 s of tokens: A still runs when B has waited past 3 s (leaving the stream aborts it)
    long = {**CHAT, "max_tokens": 30000, "ignore_eos": True, "stream": True}

    async def scenario() -> tuple[httpx.Response, httpx.Response, bool]:
        async with httpx.AsyncClient(timeout=60, headers=AUTH) as c:
            async with c.stream("POST", url, json=long) as a:
                assert a.status_code == 200  # A runs (the engine's only running slot)
                lines = a.aiter_lines()
                await anext(lines)
                waiting = asyncio.create_task(c.post(url, json=CHAT))  # B waits in the queue
                await asyncio.sleep(1.0)
                refused = await c.post(url, json=CHAT)  # C: the queue is full
                await asyncio.sleep(4.5)  # B has waited 5.5 s > 3 s behind A
                still_waiting = not waiting.done()
            return refused, await waiting, still_waiting  # A left: B runs now

    refused, waited, still_waiting = asyncio.run(scenario())
    e = error(refused, 503)
    assert e["code"] == "overloaded" and int(refused.headers["retry-after"]) >= 1
    assert still_waiting
    assert waited.status_code == 200, waited.text
    assert waited.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_request_the_idle_engine_lost_is_504_after_the_timeout(strict):
    client = strict.openai(api_key=KEY, timeout=60)
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, seed=LOST_SEED)
    waited = time.monotonic() - start
    assert info.value.status_code == 504 and info.value.body["code"] == "engine_timeout"
    assert "3s" in info.value.body["message"]
    assert waited >= 3  # the clock ran from the send: the idle engine said nothing for 3 s
    out = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
    assert out.choices[0].finish_reason in ("stop", "length")  # nothing else was harmed
