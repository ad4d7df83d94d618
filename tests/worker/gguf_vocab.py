"""Tiny tokenizers trained in the test (SentencePiece and byte-level BPE), as the GGUF
tokenizer metadata llama.cpp's converter writes for them, and the hard strings both
tokenizers must encode like transformers does."""

from __future__ import annotations

import io
import random
from typing import Any

from gguf import TokenType

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "hello",
    "world",
    "token",
    "byte",
    "fallback",
    "unicode",
    "café",
    "naïve",
    "日本語",
    "中文",
    "русский",
    "12",
    "345",
    "6789",
    "def",
    "return",
    "if",
    "else",
    "while",
    "print(x)",
    "{a:",
    "1}",
    "<div>",
    "it's",
    "don't",
    "we'll",
]
SPM_USER = ["<tool>", "<think>"]
SPM_CONTROL = ["<ctrl>", "<|im_start|>", "<|im_end|>"]
LLAMA_PIECES = {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
GEMMA_PIECES = {
    "pad_id": 0,
    "eos_id": 1,
    "bos_id": 2,
    "unk_id": 3,
    "pad_piece": "<pad>",
    "eos_piece": "<eos>",
    "bos_piece": "<bos>",
    "unk_piece": "<unk>",
    "add_dummy_prefix": False,
}


def corpus(lines: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        sep = rng.choice([" ", " ", " ", "  ", "\n", "\t"])
        out.append(sep.join(words))
    return out


def sentencepiece_vocab(
    vocab_size: int = 400, whitespace_pieces: bool = False, gemma: bool = False
) -> dict[str, Any]:
    """Train a byte-fallback BPE SentencePiece model; return its tokenizer.ggml.* metadata
    (tokens, scores, token types as llama.cpp's `_create_vocab_sentencepiece` writes them).
    `gemma`: Gemma's special pieces (<pad> <eos> <bos> <unk> <mask>) and no dummy prefix."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        user_defined_symbols=SPM_USER,
        control_symbols=SPM_CONTROL + (["<mask>"] if gemma else []),
        character_coverage=1.0,
        allow_whitespace_only_pieces=whitespace_pieces,
        split_by_whitespace=not whitespace_pieces,
        remove_extra_whitespaces=False,
        minloglevel=2,
        **(GEMMA_PIECES if gemma else LLAMA_PIECES),
    )
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        kind = TokenType.NORMAL
        if sp.is_unknown(i):
            kind = TokenType.UNKNOWN
        elif sp.is_control(i):
            kind = TokenType.CONTROL
        elif sp.is_unused(i):
            kind = TokenType.UNUSED
        elif sp.is_byte(i):
            kind = TokenType.BYTE
        elif piece in SPM_USER:
            kind = TokenType.USER_DEFINED
        tokens.append(piece)
        scores.append(sp.get_score(i))
        types.append(int(kind))
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": sp.bos_id(),
        "tokenizer.ggml.eos_token_id": sp.eos_id(),
        "tokenizer.ggml.unknown_token_id": sp.unk_id(),
    }
    if gemma:
        meta["tokenizer.ggml.padding_token_id"] = sp.pad_id()
        meta["tokenizer.ggml.add_space_prefix"] = False
    return meta


def byte_level_vocab(vocab_size: int = 700, pre: str = "gpt-2") -> dict[str, Any]:
    """Train a byte-level BPE with `tokenizers`; return its tokenizer.ggml.* metadata."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    data = tok.to_str()
    import json

    model = json.loads(data)["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab] + ["<think>"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [int(TokenType.CONTROL if t in specials else TokenType.NORMAL) for t in tokens[:-1]] + [
        int(TokenType.USER_DEFINED)
    ]
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
    }


HARD_STRINGS = [
    "",
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n",
    "\t",
    " \t \n ",
    "hello",
    "hello world",
    " hello",
    "  hello",
    "hello ",
    "hello  ",
    "hello   world",
    "hello\nworld",
    "hello\n\nworld",
    "\nhello",
    "hello\n",
    "hello\tworld",
    "\thello",
    "line one\r\nline two",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX",
    "tHe QuIcK",
    "café naïve résumé",
    "Ünïcödé façade",
    "日本語のテキスト",
    "中文文本，包括标点！",
    "русский текст",
    "한국어",
    "العربية",
    "עברית",
    "Ω≈ç√∫",
    "ж",
    "emoji 😀",
    "😀🎉👍🏽",
    "👨‍👩‍👧‍👦",
    "🇫🇷🇯🇵",
    "🦀 rust",
    "\u200b zero width",
    "e\u0301 combining",
    "\ufeffbom",
    "\x00null",
    "\x7f del",
    "tab\x0bvtab",
    "0",
    "12",
    "345",
    "6789",
    "1234567890",
    "3.14159",
    "-42",
    "1e-10",
    "0x1F",
    "2024-01-01",
    "it's don't we'll I'M",
    "def f(x):\n    return x + 1\n",
    "    indented",
    "print(x) {a: 1}",
    '{"key": [1, 2, 3]}',
    "<div class='x'>&amp;</div>",
    "https://example.com/a?b=1&c=2",
    "a" * 60,
    "ab " * 30,
    "the the the the",
    "<s>",
    "</s>",
    "<unk>",
    "<s>hello</s>",
    "<bos>x<eos> <pad><mask>",
    "hello<s>world",
    " <s> spaced </s> ",
    "<ctrl>",
    "x<ctrl>y",
    "<tool>",
    "<tool>call",
    "a <tool> b",
    "<think>reasoning</think>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|endoftext|>more",
    "<|im_end|><|im_end|>",
    "<|im_start and |im_end|> not special",
    "<s<s>>",
    "▁already▁spaced",
    "▁",
    "  leading and trailing  ",
    "multiple   inner    spaces",
    "mixed\t \n\t spaces",
    "end with newline\n\n\n",
    "Mixed 日本 and English 😀 with\ttabs\nand newlines",
]
