"""--kv-cache-dtype int8 end to end: a real engine serving a tiny random Llama (head_dim 64)
from int8 KV pages behind a real gateway, beside one serving it from bf16 pages, asked with
the official openai client; the capacity is read from what the engines report."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from server_procs import Engine, Gateway

MESSAGES = [{"role": "user", "content": "Tell me about int8 caches."}]
GREEDY = {"temperature": 0, "max_tokens": 24, "extra_body": {"ignore_eos": True}}
KINDS = ("bf16", "int8")


@pytest.fixture(scope="module")
def served(run_dir) -> Iterator[dict[str, tuple[Engine, Gateway]]]:
    from infer_worker.testing import write_tiny_llama

    model = write_tiny_llama(
        run_dir / "tiny-d64", hidden_size=128, num_heads=2, num_kv_heads=1, seed=5
    )
    flags = ("--dtype", "bfloat16", "--kv-cache-tokens", "4096", "--kv-cache-dtype")
    engines = {kv: Engine(str(model), f"ipc://{run_dir}/kv-{kv}.ipc", *flags, kv) for kv in KINDS}
    gateways: dict[str, Gateway] = {}
    try:
        for kv in KINDS:  # both engines start at once
            engines[kv].wait_ready()
            gateways[kv] = Gateway(engines[kv].endpoint)
        for gw in gateways.values():
            gw.wait_ready()
        yield {kv: (engines[kv], gateways[kv]) for kv in KINDS}
    finally:
        for proc in [*gateways.values(), *engines.values()]:
            proc.stop()


def ready_fields(engine: Engine) -> dict[str, str]:
    line = next(x for x in engine.lines if "engine ready" in x)
    return dict(re.findall(r"(\w+)=(\S+)", line))


def test_int8_engine_answers_like_the_bf16_one(served) -> None:
    answers = {}
    for kv, (_, gw) in served.items():
        out = gw.openai().chat.completions.create(
            model="tiny-d64", messages=MESSAGES, logprobs=True, top_logprobs=5, **GREEDY
        )
        choice = out.choices[0]
        assert choice.finish_reason == "length" and out.usage.completion_tokens == 24
        assert choice.message.content
        answers[kv] = choice
    # the first token comes from the same prompt on both: its top-5 and their logprobs agree
    # (measured 2026-12-03: the same top-5, logprobs within 0.03-0.10 in this bf16 model)
    firsts = {kv: c.logprobs.content[0].top_logprobs for kv, c in answers.items()}
    tops = {kv: {t.token: t.logprob for t in top} for kv, top in firsts.items()}
    assert firsts["int8"][0].token == firsts["bf16"][0].token
    shared = set(tops["bf16"]) & set(tops["int8"])
    assert len(shared) >= 4
    assert all(abs(tops["bf16"][t] - tops["int8"][t]) < 0.25 for t in shared)
    # asked again (its prompt now in the prefix cache), int8 gives the same answer
    again = (
        served["int8"][1]
        .openai()
        .chat.completions.create(model="tiny-d64", messages=MESSAGES, **GREEDY)
    )
    assert again.choices[0].message.content == answers["int8"].message.content
    assert again.usage.prompt_tokens_details.cached_tokens > 0


def test_int8_holds_about_twice_the_tokens_of_bf16_per_byte(served) -> None:
    fields = {kv: ready_fields(engine) for kv, (engine, _) in served.items()}
    assert fields["int8"]["kv_dtype"] == "int8+bfloat16_scales"
    assert fields["bf16"]["kv_dtype"] == "bfloat16"
    for kv, (_, gw) in served.items():
        assert fields[kv]["kv_tokens"] == "4096"
        metrics = httpx.get(gw.url + "/v1/metrics", timeout=10).json()
        assert metrics["cache"]["total_capacity"] == 4096
    per_token = {kv: int(f["kv_bytes_per_token"]) for kv, f in fields.items()}
    # 2 layers x 1 kv head x (K, V): 64 bf16 values = 128 bytes a row vs 64 int8 + a bf16 scale
    assert per_token == {"bf16": 2 * 2 * 128, "int8": 2 * 2 * 66}
    held = {kv: int(f["kv_bytes"]) for kv, f in fields.items()}
    assert held == {kv: 4096 * per_token[kv] for kv in KINDS}  # 1.94x the tokens per byte
