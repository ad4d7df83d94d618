"""SentencePiece GGUF vocabularies (`tokenizer.ggml.model` = "llama") as `tokenizers` BPE.

A GGUF stores a SentencePiece model as tokens, scores and token types, without
merges. Like transformers' GGUF conversion, the merges are rebuilt from the
vocabulary (best score first) and the model is a byte-fallback BPE: the
result encodes exactly as `AutoTokenizer.from_pretrained(dir, gguf_file=...)`.
Three shapes exist, picked by architecture as transformers picks them:
Llama-style (Metaspace, prefix space on the first piece), Gemma (no prefix
space; spaces normalized to "▁"; merges ordered by token position) and Phi-3
(prefix space from a normalizer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

SPACE = "\u2581"
GEMMA_ARCHS = ("gemma", "gemma2", "gemma3")


def generate_merges(vocab: Mapping[str, int], scores: Mapping[str, float]) -> list[tuple[str, str]]:
    """Every split of every token whose halves are both tokens, best score first.

    Ties keep the vocabulary's order, then prefer the longer left and right
    halves; this is transformers' `generate_merges` with scores given.
    """
    merges: list[tuple[str, str, float]] = []
    for token, score in scores.items():
        local = [
            (token[:i], token[i:], score)
            for i in range(1, len(token))
            if token[:i] in vocab and token[i:] in vocab
        ]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


def _bpe(
    tokens: Sequence[str],
    scores: Mapping[str, float],
    merges: list[tuple[str, str]] | None,
    unk: str | None,
) -> Tokenizer:
    vocab = {token: index for index, token in enumerate(tokens)}
    if merges is None:
        merges = generate_merges(vocab, scores)
    model = models.BPE(
        vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True, unk_token=unk, dropout=None
    )
    return Tokenizer(model)


def _llama_decoder(strip_prefix: bool) -> decoders.Decoder:
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if strip_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    return decoders.Sequence(steps)


def sentencepiece_tokenizer(
    arch: str,
    tokens: Sequence[str],
    scores: Sequence[float],
    merges: list[tuple[str, str]] | None,
) -> Tokenizer:
    """The byte-fallback BPE transformers builds for a SentencePiece GGUF of `arch`."""
    if arch in GEMMA_ARCHS:
        # all-space tokens are stored as real spaces; the merges follow file order
        spelled = [SPACE * len(t) if " " in t and not t.strip() else t for t in tokens]
        positions = {token: -float(index) for index, token in enumerate(spelled)}
        tokenizer = _bpe(spelled, positions, merges, unk="<unk>")
        tokenizer.normalizer = normalizers.Replace(" ", SPACE)
        tokenizer.pre_tokenizer = pre_tokenizers.Split(
            pattern=" ", behavior="merged_with_previous", invert=False
        )
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
        )
        return tokenizer
    tokenizer = _bpe(tokens, dict(zip(tokens, scores, strict=True)), merges, unk=None)
    if arch == "phi3":
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.Prepend(prepend=SPACE), normalizers.Replace(pattern=" ", content=SPACE)]
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=SPACE, prepend_scheme="first", split=False
        )
    tokenizer.decoder = _llama_decoder(strip_prefix=True)
    return tokenizer


def adds_space_prefix(arch: str) -> bool:
    """Whether the builder above puts "▁" before the text (what the file's
    tokenizer.ggml.add_space_prefix must say)."""
    return arch not in GEMMA_ARCHS
