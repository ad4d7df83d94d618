"""Real text from the default model (SmolLM2-135M, greedy): stop strings, emoji and CJK."""

from __future__ import annotations

import time

import httpx
import jinja2
import pytest

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def chat_text(client, messages, stream: bool, **kw) -> tuple[str, str, list[str]]:
    """(text, finish_reason, streamed pieces) of one greedy chat completion."""
    args = dict(model="smollm2", messages=messages, temperature=0, **kw)
    if not stream:
        out = client.chat.completions.create(**args)
        return out.choices[0].message.content, out.choices[0].finish_reason, []
    pieces, reasons = [], []
    for chunk in client.chat.completions.create(stream=True, **args):
        pieces.append(chunk.choices[0].delta.content or "")
        if chunk.choices[0].finish_reason:
            reasons.append(chunk.choices[0].finish_reason)
    assert len(reasons) == 1
    return "".join(pieces), reasons[0], pieces


@pytest.fixture(scope="module")
def france(smol_gateway) -> str:
    text, reason, _ = chat_text(smol_gateway.openai(), FRANCE, False, max_tokens=12)
    assert reason == "stop" and text == "The capital of France is Paris."
    return text


def test_usage_equals_the_tokenizers_counts(smol_gateway, smol_tokenizer, smol_template, france):
    out = smol_gateway.openai().chat.completions.create(
        model="smollm2", messages=FRANCE, temperature=0, max_tokens=12
    )
    # rendered independently with plain jinja2 (Hugging Face's settings) and the model's tokenizer
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    prompt = env.from_string(smol_template).render(messages=FRANCE, add_generation_prompt=True)
    assert out.usage.prompt_tokens == len(
        smol_tokenizer.encode(prompt, add_special_tokens=False).ids
    )
    # the answer's tokens plus the end-of-turn token that stopped it
    answer = smol_tokenizer.encode(france, add_special_tokens=False).ids
    assert out.usage.completion_tokens == len(answer) + 1


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_spanning_tokens_is_cut(smol_gateway, france, stream):
    # " capital" | " of" | " France": the stop string spans three tokens
    stop = "al of Fr"
    text, reason, pieces = chat_text(
        smol_gateway.openai(), FRANCE, stream, max_tokens=12, stop=[stop, "zzz"]
    )
    assert text == france[: france.index(stop)] == "The capit"
    assert reason == "stop"
    assert not any("al of" in p for p in pieces)


def test_stop_string_ends_the_request_in_the_engine(smol_gateway, france):
    body = {
        "model": "smollm2",
        "messages": FRANCE,
        "temperature": 0,
        "stop": "capital",
        "ignore_eos": True,
        "max_tokens": 400,
    }
    out = httpx.post(smol_gateway.url + "/v1/chat/completions", json=body, timeout=120).json()
    assert out["choices"][0]["message"]["content"] == "The "
    assert out["usage"]["completion_tokens"] < 10
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        engine = httpx.get(smol_gateway.url + "/v1/metrics").json()["engine"]
        if engine["concurrent_requests"] == 0:
            break
        time.sleep(0.1)
    assert engine["concurrent_requests"] == 0 and engine["total_tokens_generated"] < 100


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "expect"),
    [("Write three emoji.", 9, "👩👩👩"), ("Translate 'hello' to Chinese.", 9, "晴晴！Hello")],
)
def test_emoji_and_cjk_stream_intact(smol_gateway, prompt, max_tokens, expect):
    messages = [{"role": "user", "content": prompt}]
    client = smol_gateway.openai()
    full, _, _ = chat_text(client, messages, False, max_tokens=max_tokens)
    streamed, _, pieces = chat_text(client, messages, True, max_tokens=max_tokens)
    assert expect in full
    assert streamed == full
    assert all("\ufffd" not in p for p in pieces)
    # each piece is valid UTF-8 text on its own (no split characters)
    assert all(p.encode("utf-8").decode("utf-8") == p for p in pieces)
