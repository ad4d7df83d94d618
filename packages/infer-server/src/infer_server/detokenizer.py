"""Incremental detokenization that never splits a UTF-8 character.

Invariant: the concatenation of everything `push` returned followed by
`flush()` equals `tokenizer.decode(all ids)` for byte-level tokenizers, and
no returned piece ends inside a multi-byte character (a trailing U+FFFD, the
mark of an incomplete byte sequence, is held back until more ids arrive).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Turns a stream of token ids into a stream of text pieces."""

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._prefix = 0  # ids[_prefix:_read] is context already emitted
        self._read = 0  # ids before _read have been emitted as text

    @property
    def token_ids(self) -> list[int]:
        return list(self._ids)

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=self._skip)

    def push(self, ids: Iterable[int]) -> str:
        """Add ids; return the text they complete (may be empty)."""
        self._ids.extend(ids)
        if self._read == len(self._ids):
            return ""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if after.endswith(REPLACEMENT) or len(after) <= len(before):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]

    def flush(self) -> str:
        """Return the text still held back (possibly with U+FFFD for broken bytes)."""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :]
