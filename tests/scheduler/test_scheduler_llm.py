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
