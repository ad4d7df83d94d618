"""The event loop never blocks on a big request: /health stays quick during a 4 MB /tokenize.

The timing bound is generous (100 ms, the loop's usual answer is a few ms);
docs/benchmarks.md ("gateway event loop") has the measured figures.
"""

from __future__ import annotations

import json
import random
import threading
import time

import httpx
import openai
import pytest

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "it",
    "an",
    "are",
]


def big_text(chars: int) -> str:
    rng = random.Random(5)
    out, size = [], 0
    while size < chars:
        word = rng.choice(WORDS) + rng.choice(["", "s", "ed", "ing", "ly", "42"])
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def test_health_answers_quickly_while_a_4mb_tokenize_runs(tiny_gateway, smol_tokenizer):
    text = big_text(4 * 1000 * 1000)
    result: dict = {}

    body = json.dumps({"prompt": text}).encode()  # encoded and (below) parsed off the clock

    def tokenize() -> None:
        headers = {"Content-Type": "application/json"}
        r = httpx.post(tiny_gateway.url + "/tokenize", content=body, headers=headers, timeout=300)
        result["response"] = r

    worker = threading.Thread(target=tokenize)
    latencies = []
    with httpx.Client(timeout=10) as client:
        client.get(tiny_gateway.url + "/health")  # connection open before the clock starts
        t0 = time.perf_counter()
        worker.start()
        while worker.is_alive():
            start = time.perf_counter()
            assert client.get(tiny_gateway.url + "/health").status_code == 200
            latencies.append(time.perf_counter() - start)
            if latencies[-1] > 0.03:
                print(f"slow probe at {start - t0:.2f}s: {latencies[-1] * 1000:.0f} ms")
            time.sleep(0.02)
    worker.join()
    print(f"the request took {time.perf_counter() - t0:.2f}s")
    r = result["response"]
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    expected = smol_tokenizer.encode(text, add_special_tokens=False).ids  # the tiny model's
    assert body["count"] == len(expected) and body["tokens"] == expected
    assert len(latencies) >= 10, latencies  # it really ran alongside
    worst = max(latencies)
    print(f"/health during a 4 MB /tokenize: {len(latencies)} probes, worst {worst * 1000:.1f} ms")
    assert worst < 0.1, sorted(latencies)[-5:]


def test_a_prompt_that_cannot_fit_is_refused_before_tokenizing(tiny_gateway):
    text = big_text(3 * 1000 * 1000)
    with pytest.raises(openai.BadRequestError) as info:
        tiny_gateway.openai(timeout=60).completions.create(model="tiny", prompt=text, max_tokens=2)
    assert info.value.body["code"] == "context_length_exceeded"
    assert "at least" in info.value.body["message"]  # the bound, not a count: not tokenized
