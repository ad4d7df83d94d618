"""Build a `tokenizers.Tokenizer` from GGUF tokenizer metadata.

Mirrors what transformers builds for the same file (`AutoTokenizer` with
`gguf_file=`), so both encode and decode identically: byte-level BPE for
`tokenizer.ggml.model` "gpt2" (with the split regex its `tokenizer.ggml.pre`
names), byte-fallback BPE for "llama" (SentencePiece, see gguf_spm); control
tokens and the bos/eos/unk/pad tokens as special added tokens, user-defined
tokens as plain added tokens. A tokenizer model or pre-tokenizer name not
listed here is a ModelLoadError, never a fallback.
"""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from .errors import ModelLoadError
from .gguf_spm import GEMMA_ARCHS, adds_space_prefix, sentencepiece_tokenizer

CONTROL = 3
USER_DEFINED = 4

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GPT2_SPLIT = None  # ByteLevel's own regex (GPT-2's)
# tokenizer.ggml.pre -> split regex for byte-level BPE files, as transformers applies them
SPLIT_REGEXES: dict[str, str | None] = {
    "default": GPT2_SPLIT,
    "gpt-2": GPT2_SPLIT,
    "smollm": GPT2_SPLIT,
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT,
    "dbrx": _LLAMA3_SPLIT,
    "falcon3": _LLAMA3_SPLIT,
    "pixtral": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
    "tekken": _TEKKEN_SPLIT,
    "gpt-4o": _GPT4O_SPLIT,
    "llama4": _GPT4O_SPLIT,
}


def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def _byte_level(tokens: list[str], merges: list[tuple[str, str]], pre: str) -> Tokenizer:
    spelling = byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {
        tok if set(tok) <= alphabet else "".join(spelling[b] for b in tok.encode("utf-8")): i
        for i, tok in enumerate(tokens)
    }
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            dropout=None,
        )
    )
    split = SPLIT_REGEXES[pre]
    if split is None:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _add_tokens(tokenizer: Tokenizer, meta: dict[str, Any], tokens: list[str], byte_level: bool):
    """Control tokens and the declared specials as special, user-defined ones as plain
    (Gemma's tokenizer also makes <mask> special)."""
    types: list[int] = list(meta.get("tokenizer.ggml.token_type") or [])
    alphabet = set(byte_alphabet().values()) if byte_level else None
    control = [
        AddedToken(tok, normalized=False, special=True)
        for tok, kind in zip(tokens, types, strict=False)
        if kind == CONTROL and (alphabet is None or set(tok) <= alphabet)
    ]
    tokenizer.add_special_tokens(control)
    vocab = tokenizer.get_vocab()
    user = [
        AddedToken(tok, normalized=False, special=False)
        for tok, kind in zip(tokens, types, strict=False)
        if kind == USER_DEFINED and tok in vocab
    ]
    tokenizer.add_tokens(user)
    declared = [
        tokens[int(meta[f"tokenizer.ggml.{key}_token_id"])]
        for key in ("bos", "eos", "unknown", "padding")
        if meta.get(f"tokenizer.ggml.{key}_token_id") is not None
    ]
    if meta.get("general.architecture") in GEMMA_ARCHS and "<mask>" in tokens:
        declared.append("<mask>")
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in declared])


def _post_processor(tokenizer: Tokenizer, meta: dict[str, Any], tokens: list[str], spm: bool):
    """bos/eos around each sequence as the file's add_bos/add_eos flags say (SentencePiece
    files without the flag add bos, as llama.cpp and transformers do)."""
    ends = {}
    for key in ("bos", "eos"):
        token_id = meta.get(f"tokenizer.ggml.{key}_token_id")
        wanted = meta.get(f"tokenizer.ggml.add_{key}_token", spm and key == "bos")
        if wanted and token_id is not None:
            ends[key] = (tokens[int(token_id)], int(token_id))
    bos = f"{ends['bos'][0]}:0 " if "bos" in ends else ""
    eos = f" {ends['eos'][0]}:0" if "eos" in ends else ""
    single = f"{bos}$A:0{eos}"
    pair = single
    pair += f" {ends['bos'][0]}:1" if "bos" in ends else ""
    pair += " $B:1" + (f" {ends['eos'][0]}:1" if "eos" in ends else "")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=list(ends.values())
    )


def tokenizer_from_gguf(meta: dict[str, Any], source: str) -> Tokenizer:
    """Tokenizer for metadata `meta` (GGUF key -> value); ModelLoadError if unsupported."""
    kind = meta.get("tokenizer.ggml.model")
    arch = str(meta.get("general.architecture", ""))
    if kind not in ("gpt2", "llama"):
        raise ModelLoadError(
            source,
            f"unsupported GGUF tokenizer model {kind!r} (tokenizer.ggml.model; "
            "supported: 'gpt2' byte-level BPE, 'llama' SentencePiece)",
        )
    tokens: list[str] = list(meta.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise ModelLoadError(source, "GGUF metadata lacks tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
    pre = meta.get("tokenizer.ggml.pre", "default")
    if kind == "gpt2":
        if pre not in SPLIT_REGEXES:
            raise ModelLoadError(
                source,
                f"unsupported GGUF pre-tokenizer tokenizer.ggml.pre={pre!r} "
                f"(supported: {', '.join(SPLIT_REGEXES)})",
            )
        if not merges:
            raise ModelLoadError(source, "GGUF metadata lacks tokenizer.ggml.merges")
        tokenizer = _byte_level(tokens, merges, pre)
    else:
        if pre != "default":
            raise ModelLoadError(
                source,
                f"unsupported GGUF pre-tokenizer tokenizer.ggml.pre={pre!r} for a SentencePiece "
                "vocabulary (supported: 'default')",
            )
        prefix = meta.get("tokenizer.ggml.add_space_prefix", adds_space_prefix(arch))
        if bool(prefix) != adds_space_prefix(arch):
            raise ModelLoadError(
                source,
                f"tokenizer.ggml.add_space_prefix={prefix} is not supported for architecture "
                f"{arch!r} (transformers builds this tokenizer with add_space_prefix="
                f"{adds_space_prefix(arch)})",
            )
        scores = meta.get("tokenizer.ggml.scores")
        if not merges and (scores is None or len(scores) != len(tokens)):
            raise ModelLoadError(
                source, "SentencePiece GGUF lacks tokenizer.ggml.scores for every token"
            )
        tokenizer = sentencepiece_tokenizer(arch, tokens, scores or [], merges or None)
    _add_tokens(tokenizer, meta, tokens, byte_level=kind == "gpt2")
    _post_processor(tokenizer, meta, tokens, spm=kind == "llama")
    return tokenizer
