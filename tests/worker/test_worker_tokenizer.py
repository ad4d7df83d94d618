"""The tokenizer built from GGUF metadata encodes and decodes exactly like transformers'."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from infer_worker import ModelBundle

BASE = [
    "",
    "Hello, world!",
    "hello world",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "tabs\tand\ttabs",
    "line one\nline two\n\nline four",
    "\n\n\n",
    "   \n  \n\t\n",
    "Ünïcödé façade naïve résumé",
    "日本語のテキストです。",
    "中文文本测试，包括标点符号！",
    "한국어 텍스트",
    "Русский текст и ёжик",
    "العربية نص",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵",
    "math: ∑_{i=1}^{n} i² = n(n+1)/2 ≈ ∞",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    'for (int i = 0; i < 10; ++i) { printf("%d\\n", i); }',
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text",
    "<|im_end|><|im_end|>",
    "almost special <|im_start and |im_end|> not quite",
    "<repo_name>infer<file_sep>main.py",
    "numbers 1234567890 3.14159 -42 1e-10 0x1F",
    "it's don't I'll we've they're she'd",
    "CAPS LOCK AND MiXeD cAsE",
    "URL https://example.com/path?query=1&b=2#frag",
    "a" * 200,
    "word " * 60,
    "🙂" * 20,
    "\u200b zero width \u200d joiner \ufeff bom",
    "combining e\u0301 a\u0308 characters",
    "\r\nwindows\r\nline\r\nendings",
    "#!/bin/bash\necho $HOME | grep -v '^#'",
    "SELECT * FROM users WHERE id = 1;",
    '<div class="x">&amp; &lt;tag&gt;</div>',
    "Mixed 日本 and English 😀 with\ttabs\nand newlines",
]


def varied_strings(count: int = 400) -> list[str]:
    rng = random.Random(1234)
    pieces = [p for p in BASE if p] + [
        " ",
        "\n",
        "  ",
        "\t",
        "<|im_end|>",
        "<|im_start|>",
        "😀",
        "é",
        "東",
    ]
    out = list(BASE)
    while len(out) < count:
        k = rng.randint(2, 6)
        text = "".join(rng.choice(pieces) for _ in range(k))
        if rng.random() < 0.3:
            text = "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 30)))
        out.append(text)
    return out


@pytest.fixture(scope="module")
def hf_tokenizer(gguf_path: Path):
    return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)


def test_encode_decode_match_transformers(default_bundle: ModelBundle, hf_tokenizer) -> None:
    ours = default_bundle.tokenizer
    strings = varied_strings()
    assert len(strings) >= 300
    encoded = ours.encode_batch(strings)
    for text, enc in zip(strings, encoded, strict=True):
        expected = hf_tokenizer.encode(text)
        assert enc.ids == expected, repr(text)
        assert ours.decode(enc.ids, skip_special_tokens=False) == hf_tokenizer.decode(expected), (
            repr(text)
        )
        assert ours.decode(enc.ids, skip_special_tokens=True) == hf_tokenizer.decode(
            expected, skip_special_tokens=True
        ), repr(text)


def test_special_tokens_written_in_text_are_single_tokens(default_bundle: ModelBundle) -> None:
    tok = default_bundle.tokenizer
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>").ids
    assert ids[0] == tok.token_to_id("<|im_start|>") == 1
    assert ids[-1] == tok.token_to_id("<|im_end|>") == 2
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi"


def test_decode_of_arbitrary_ids_matches_transformers(
    default_bundle: ModelBundle, hf_tokenizer
) -> None:
    rng = random.Random(7)
    for _ in range(50):
        ids = [rng.randrange(default_bundle.config.vocab_size) for _ in range(rng.randint(1, 20))]
        assert default_bundle.tokenizer.decode(
            ids, skip_special_tokens=False
        ) == hf_tokenizer.decode(ids)


def test_tokenizer_survives_json_round_trip(default_bundle: ModelBundle) -> None:
    text = "\n".join(varied_strings(60))
    rebuilt = Tokenizer.from_str(default_bundle.tokenizer.to_str())
    assert rebuilt.encode(text).ids == default_bundle.tokenizer.encode(text).ids
    assert rebuilt.get_vocab_size() == default_bundle.config.vocab_size
