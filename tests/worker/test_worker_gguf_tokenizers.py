"""GGUF tokenizers of both kinds encode and decode exactly like transformers' conversion
of the same file: a SentencePiece vocabulary trained in the test (Llama, Gemma and Phi-3
shapes) and a byte-level BPE under every supported pre-tokenizer name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf_vocab import HARD_STRINGS, byte_level_vocab, sentencepiece_vocab
from transformers import AutoTokenizer

from infer_worker.errors import ModelLoadError
from infer_worker.gguf_tokenizer import SPLIT_REGEXES, tokenizer_from_gguf
from infer_worker.testing_gguf import write_gguf


def write_vocab(path: Path, arch: str, vocab: dict) -> dict:
    meta = {"general.architecture": arch, f"{arch}.block_count": 1, **vocab}
    embed = np.zeros((len(vocab["tokenizer.ggml.tokens"]), 32), np.float32)
    write_gguf(path, arch, meta, {"token_embd.weight": embed})
    return meta


def assert_same(path: Path, meta: dict) -> int:
    """Our tokenizer against transformers' on HARD_STRINGS; returns how many strings."""
    ref = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ours = tokenizer_from_gguf(meta, str(path))
    assert ours.get_vocab_size() == len(ref)
    for text in HARD_STRINGS:
        want = ref.encode(text)
        got = ours.encode(text).ids
        assert got == want, repr(text)
        plain = ref.encode(text, add_special_tokens=False)
        assert ours.encode(text, add_special_tokens=False).ids == plain, repr(text)
        for skip in (False, True):
            assert ours.decode(got, skip_special_tokens=skip) == ref.decode(
                want, skip_special_tokens=skip
            ), repr(text)
    return len(HARD_STRINGS)


@pytest.fixture(scope="module")
def spm_vocab() -> dict:
    return sentencepiece_vocab()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "phi3"])
def test_sentencepiece_matches_transformers(arch: str, spm_vocab: dict, tmp_path: Path) -> None:
    path = tmp_path / "spm.gguf"
    meta = write_vocab(path, arch, spm_vocab)
    assert assert_same(path, meta) >= 80
    ours = tokenizer_from_gguf(meta, str(path))
    # the byte fallback and the unknown/special tokens really are exercised
    ids = ours.encode("Ω <s>", add_special_tokens=False).ids
    assert any(ours.id_to_token(i).startswith("<0x") for i in ids)
    assert ours.token_to_id("<s>") in ids
    assert ours.encode("hi").ids[0] == 1  # llama.cpp and transformers add bos by default


def test_sentencepiece_flags(spm_vocab: dict, tmp_path: Path) -> None:
    path = tmp_path / "flags.gguf"
    vocab = dict(spm_vocab)
    vocab["tokenizer.ggml.add_bos_token"] = False
    vocab["tokenizer.ggml.add_eos_token"] = True
    meta = write_vocab(path, "llama", vocab)
    assert_same(path, meta)
    ids = tokenizer_from_gguf(meta, "x").encode("hello").ids
    assert ids[0] != 1 and ids[-1] == 2


def test_gemma_sentencepiece_matches_transformers(tmp_path: Path) -> None:
    """Gemma: no prefix space, all-space pieces stored as real spaces, merges by position."""
    vocab = sentencepiece_vocab(whitespace_pieces=True, gemma=True)
    tokens = vocab["tokenizer.ggml.tokens"]
    assert any(set(t) == {"\u2581"} and len(t) > 1 for t in tokens)
    vocab["tokenizer.ggml.tokens"] = [
        " " * len(t) if set(t) == {"\u2581"} and len(t) > 1 else t for t in tokens
    ]
    for arch in ("gemma2", "gemma3"):
        path = tmp_path / f"{arch}.gguf"
        meta = write_vocab(path, arch, vocab)
        assert assert_same(path, meta) >= 80


ARCH_OF_PRE = {"qwen2": "qwen2", "deepseek-r1-qwen": "qwen2", "gpt-4o": "phi3", "smollm": "llama"}


@pytest.mark.parametrize("pre", sorted(SPLIT_REGEXES))
def test_byte_level_bpe_matches_transformers(pre: str, tmp_path: Path) -> None:
    path = tmp_path / "bpe.gguf"
    meta = write_vocab(path, ARCH_OF_PRE.get(pre, "llama"), byte_level_vocab(pre=pre))
    assert assert_same(path, meta) >= 80


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tokenizer.ggml.pre": "deepseek-llm"}, "deepseek-llm"),
        ({"tokenizer.ggml.model": "bert"}, "bert"),
    ],
)
def test_unknown_tokenizer_kinds_are_refused(change: dict, named: str) -> None:
    meta = {"general.architecture": "llama", **byte_level_vocab(vocab_size=300), **change}
    with pytest.raises(ModelLoadError, match=named):
        tokenizer_from_gguf(meta, "x.gguf")


def test_sentencepiece_refusals(spm_vocab: dict) -> None:
    base = {"general.architecture": "llama", **spm_vocab}
    with pytest.raises(ModelLoadError, match="llama-bpe"):
        tokenizer_from_gguf({**base, "tokenizer.ggml.pre": "llama-bpe"}, "x")
    with pytest.raises(ModelLoadError, match="add_space_prefix"):
        tokenizer_from_gguf({**base, "tokenizer.ggml.add_space_prefix": False}, "x")
    with pytest.raises(ModelLoadError, match="scores"):
        tokenizer_from_gguf({**base, "tokenizer.ggml.scores": []}, "x")
