"""The offline API on the default model (SmolLM2-135M-Instruct GGUF), float32 on the CPU."""

from __future__ import annotations

import pytest

from infer_scheduler import LLM, SamplingParams

QUESTIONS = [
    "Write a haiku about the sea.",
    "Name three colors.",
    "What is 2 + 2?",
    "Say hello in Spanish.",
    "Why is the sky blue?",
    "List two fruits.",
    "What does a cat say?",
]


def chat(question: str) -> str:
    system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.fixture(scope="module")
def llm() -> LLM:
    return LLM(model="smollm2", device="cpu", dtype="float32", kv_cache_tokens=8192)


def test_batch_equals_one_at_a_time(llm: LLM) -> None:
    prompts = [chat(q) for q in QUESTIONS[:6]]
    together = llm.generate(prompts, max_tokens=6)
    assert [o.prompt for o in together] == prompts
    for prompt, out in zip(prompts, together, strict=True):
        single = llm.generate(prompt, max_tokens=6)[0]
        assert single.token_ids == out.token_ids, prompt
    assert together[0].timing.batch_size == 6 and together[0].prompt_tokens > 5
    # the shared chat prefix is reused from the cache on the second pass
    assert single.cached_tokens > 0 and llm.engine.leaked_blocks() == 0


def test_generate_options_and_real_text(llm: LLM) -> None:
    prompt = chat("What is the capital of France?")
    ids = llm.encode(prompt)
    greedy, from_ids = llm.generate([prompt, ids], max_tokens=24)
    assert greedy.token_ids == from_ids.token_ids and from_ids.prompt is None
    assert from_ids.prompt_token_ids == ids and greedy.prompt_tokens == len(ids)
    assert "Paris" in greedy.text
    assert greedy.finish_reason == "stop"  # the model ends its answer with <|im_end|>
    assert greedy.token_ids[-1] in llm.bundle.config.eos_token_ids
    assert greedy.text == llm.tokenizer.decode(greedy.token_ids, skip_special_tokens=True)

    stop_at = greedy.token_ids[2]
    cut, free, seeded = llm.generate(
        [prompt] * 3,
        [SamplingParams(temperature=0), SamplingParams(temperature=0), SamplingParams(seed=7)],
        max_tokens=[24, 6, 6],
        ignore_eos=[False, True, True],
        stop_token_ids=[[stop_at], [], []],
    )
    assert cut.token_ids == greedy.token_ids[:3] and cut.finish_reason == "stop"
    assert free.token_ids == greedy.token_ids[:6] and free.finish_reason == "length"
    again = llm.generate(prompt, SamplingParams(seed=7), max_tokens=6, ignore_eos=True)[0]
    assert again.token_ids == seeded.token_ids
    assert seeded.timing.tokens_per_second > 0

    with pytest.raises(ValueError, match="context length"):
        llm.generate([[1] * (llm.bundle.config.context_length + 1)])
    with pytest.raises(ValueError):
        llm.generate([prompt, prompt], [SamplingParams()])
    assert not llm.engine.has_work and llm.engine.leaked_blocks() == 0


def test_sampling_params_speak_vllms_dialect(llm: LLM) -> None:
    prompt = chat("Name three colors.")
    vllm_style = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=32))[0]
    infer_style = llm.generate(prompt, SamplingParams(temperature=0), max_tokens=32)[0]
    assert vllm_style.outputs[0].token_ids == vllm_style.token_ids == infer_style.token_ids
    assert vllm_style.outputs[0].text == vllm_style.text and len(vllm_style.outputs) == 1
    greedy = vllm_style.token_ids
    assert len(greedy) > 3

    cut, long = llm.generate(
        [prompt, prompt],
        [
            SamplingParams(temperature=0, max_tokens=32, stop_token_ids=[greedy[2]]),
            SamplingParams(temperature=0, max_tokens=40, ignore_eos=True),
        ],
    )
    assert cut.token_ids == greedy[:3] and cut.finish_reason == "stop"
    assert len(long.token_ids) == 40 and long.finish_reason == "length"
    assert long.token_ids[: len(greedy)] == greedy

    # n choices; a seeded request's choice i samples with seed + i
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, seed=5, n=3, max_tokens=8)
    three = llm.generate(prompt, params)[0]
    assert [c.index for c in three.outputs] == [0, 1, 2]
    assert all(len(c.token_ids) <= 8 for c in three.outputs)
    for i, choice in enumerate(three.outputs):
        alone = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, seed=5 + i, max_tokens=8)
        assert llm.generate(prompt, alone)[0].token_ids == choice.token_ids
    assert len({tuple(c.token_ids) for c in three.outputs}) > 1

    # vLLM's integer logprobs: the sampled token's plus that many alternatives
    two, none = llm.generate(
        [prompt, prompt],
        [SamplingParams(temperature=0, max_tokens=5, logprobs=k) for k in (2, 0)],
    )
    assert len(two.logprobs) == len(two.token_ids) and all(len(t) == 2 for t in two.top_logprobs)
    assert [t[0][0] for t in two.top_logprobs] == two.token_ids  # greedy: the best is sampled
    assert none.logprobs == pytest.approx(two.logprobs, abs=1e-4) and none.top_logprobs is None
    # infer's own keywords (and the protocol's class) keep working
    from infer_protocol import SamplingParams as WireParams

    old = llm.generate(
        prompt, SamplingParams(temperature=0, logprobs=True, top_logprobs=2), max_tokens=5
    )
    wire = llm.generate(prompt, WireParams(temperature=0), max_tokens=5)[0]
    assert [[t for t, _ in row] for row in old[0].top_logprobs] == [
        [t for t, _ in row] for row in two.top_logprobs
    ]
    assert old[0].logprobs == pytest.approx(two.logprobs, abs=1e-4)
    assert wire.token_ids == greedy[:5]

    with pytest.raises(ValueError, match="max_tokens given twice"):
        llm.generate(prompt, SamplingParams(max_tokens=4), max_tokens=8)
    assert not llm.engine.has_work and llm.engine.leaked_blocks() == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"temprature": 0.5}, TypeError, "unknown argument(s) ['temprature']"),
        ({"stop": ["\n"]}, TypeError, "stop is not supported"),
        ({"use_beam_search": True}, TypeError, "beam search"),
        ({"max_tokens": 0}, ValueError, "max_tokens"),
        ({"max_tokens": 2.5}, TypeError, "max_tokens"),
        ({"n": 0}, ValueError, "n must be"),
        ({"temperature": -1}, ValueError, "temperature"),
        ({"top_p": 1.5}, ValueError, "top_p"),
        ({"logprobs": 21}, ValueError, "top_logprobs"),
        ({"logprobs": 3, "top_logprobs": 2}, ValueError, "disagrees"),
        ({"stop_token_ids": [-1]}, ValueError, "stop_token_ids"),
        ({"ignore_eos": "yes"}, TypeError, "ignore_eos"),
    ],
)
def test_sampling_params_refuse_what_they_do_not_implement(kwargs, error, needle) -> None:
    with pytest.raises(error) as info:
        SamplingParams(**kwargs)
    assert needle in str(info.value)


def test_sampling_params_fields() -> None:
    p = SamplingParams(temperature=0, max_tokens=32, seed=3, logprobs=1, n=2)
    assert (p.temperature, p.max_tokens, p.seed, p.n, p.greedy) == (0.0, 32, 3, 2, True)
    assert p.sampling.logprobs is True and p.sampling.top_logprobs == 1
    assert p == SamplingParams(temperature=0, max_tokens=32, seed=3, logprobs=1, n=2)
    assert "max_tokens=32" in repr(p)
    default = SamplingParams()
    assert (default.temperature, default.top_p, default.top_k, default.max_tokens) == (
        0.7,
        0.9,
        50,
        None,
    )
