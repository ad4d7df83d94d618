"""Hostile HTTP, by hand: huge, deep, broken and absurd requests get clear 4xx answers."""

from __future__ import annotations

import httpx
import pytest
from rel_procs import Engine, Gateway

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def gw(tiny, rel_dir):
    engine = Engine(tiny, f"ipc://{rel_dir}/hostile.ipc").wait_ready()
    gateway = Gateway(engine.endpoint, "--max-body-bytes", str(LIMIT)).wait_ready()
    yield gateway
    gateway.stop()
    engine.stop()


def post(gw: Gateway, path: str, **kw) -> httpx.Response:
    try:
        return httpx.post(gw.url + path, timeout=60, **kw)
    except httpx.TransportError as exc:  # say what the gateway was doing (a CI run saw one)
        tail = "".join(gw.lines[-40:])
        raise AssertionError(f"{exc!r}; gateway alive={gw.popen.poll() is None}:\n{tail}") from exc


def assert_error(r: httpx.Response, status: int, param: str | tuple | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] in ((param,) if isinstance(param, str) else param), err
    return err


def chat(**extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_oversized_bodies_are_413_with_or_without_a_length(gw):
    headers = {"Content-Type": "application/json"}
    big = b'{"model":"tiny","prompt":"' + b"a" * (2 * LIMIT) + b'"}'
    assert_error(post(gw, "/v1/completions", content=big, headers=headers), 413)

    def chunks():  # chunked transfer: no Content-Length to trust
        yield b'{"model":"tiny","prompt":"'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    assert_error(post(gw, "/v1/completions", content=chunks(), headers=headers), 413)


def test_deeply_nested_json_is_400(gw):
    for depth in (1000, 100_000):
        body = "[" * depth + "]" * depth
        assert_error(post(gw, "/v1/chat/completions", content=body), 400)
        nested = '{"model":"tiny","messages":' + "[" * depth + "]" * depth + "}"
        assert_error(post(gw, "/v1/chat/completions", content=nested), 400)


def test_invalid_utf8_and_not_json_are_400(gw):
    headers = {"Content-Type": "application/json"}
    for raw in (b'{"model":"tiny","prompt":"\xff\xfe\xc3"}', b"\x00\x01\x02", b"", b"{"):
        assert_error(post(gw, "/v1/completions", content=raw, headers=headers), 400)
    # lone UTF-16 surrogates are valid JSON escapes but not text (they used to give 500)
    for path, raw in [
        ("/v1/completions", b'{"model":"tiny","prompt":"\\ud800 lone","max_tokens":2}'),
        (
            "/v1/chat/completions",
            b'{"model":"tiny","messages":[{"role":"user","content":"\\udfff"}]}',
        ),
        ("/tokenize", b'{"model":"tiny","prompt":"x\\udbff"}'),
    ]:
        assert_error(post(gw, path, content=raw, headers=headers), 400)
    pair = b'{"model":"tiny","prompt":"\\ud83d\\ude00","max_tokens":2}'  # a real emoji
    assert post(gw, "/v1/completions", content=pair, headers=headers).status_code == 200
    for raw in (b'{"model":"tiny","prompt":"x","temperature":Infinity}', b'{"n":NaN}'):
        r = post(gw, "/v1/completions", content=raw, headers=headers)
        assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 10**9}, "n"),
        ({"n": 10**30}, "n"),
        ({"max_tokens": 10**12}, ("max_tokens", "messages")),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 1e308}, ("max_tokens", "messages")),
        ({"logprobs": True, "top_logprobs": 10**6}, "top_logprobs"),
        ({"stop": ["x"] * 10_000}, "stop"),
        ({"logit_bias": {str(i): 1 for i in range(100_000)}}, "logit_bias"),
        ({"seed": 2**200}, "seed"),
    ],
)
def test_absurd_numbers_are_400_naming_the_field(gw, extra, param):
    r = post(gw, "/v1/chat/completions", json=chat(**extra))
    assert_error(r, 400, param)


def test_empty_and_over_long_prompts(gw):
    assert_error(post(gw, "/v1/completions", json={"model": "tiny", "prompt": ""}), 400, "prompt")
    assert_error(post(gw, "/v1/completions", json={"model": "tiny", "prompt": []}), 400, "prompt")
    assert_error(post(gw, "/v1/chat/completions", json=chat(messages=[])), 400, "messages")
    long = " hello" * 5000  # ~5000 tokens against a 2048-token context
    err = assert_error(post(gw, "/v1/completions", json={"model": "tiny", "prompt": long}), 400)
    assert err["code"] == "context_length_exceeded" and "2048" in err["message"]
    ids = list(range(3000))
    r = post(gw, "/v1/completions", json={"model": "tiny", "prompt": ids, "max_tokens": 1})
    assert_error(r, 400)


def test_prompts_made_of_special_tokens_are_served(gw):
    specials = "<|im_start|><|im_end|><|endoftext|>" * 20
    r = post(gw, "/v1/completions", json={"model": "tiny", "prompt": specials, "max_tokens": 3})
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("length", "stop")
    body = chat(messages=[{"role": "user", "content": specials}], max_tokens=3)
    r = post(gw, "/v1/chat/completions", json=body)
    assert r.status_code == 200
    r = post(gw, "/tokenize", json={"model": "tiny", "prompt": specials})
    assert r.status_code == 200 and r.json()["count"] > 0


def test_after_all_that_the_gateway_serves_normally(gw):
    r = post(gw, "/v1/chat/completions", json=chat(max_tokens=4, ignore_eos=True))
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    assert "Traceback" not in gw.output
