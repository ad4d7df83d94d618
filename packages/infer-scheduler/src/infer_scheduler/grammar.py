"""Constrained decoding: compile a request's Constraint and mask its logits each step.

Built on xgrammar (chosen over llguidance by measurement, see
docs/architecture.md). Invariants:
- a GrammarState's `mask` always holds the tokens allowed next, so the
  sampler can only pick a token the grammar accepts;
- `advance` returns True once the grammar has matched a whole output and can
  only end there (the request then stops with finish_reason "stop");
- compiled grammars are cached per constraint in a bounded LRU, so a repeated
  schema costs one matcher and one mask fill, not a compile.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from infer_protocol import Constraint

log = logging.getLogger("infer_scheduler")
DEFAULT_CACHE_SIZE = 128
# compact JSON: a small model cannot wander into unbounded whitespace
_SEPARATORS = (", ", ": ")


class GrammarError(ValueError):
    """A constraint that does not compile; the message names the problem."""


def _clean(exc: Exception) -> str:
    """xgrammar's message without its '[time] /path/file.cc:line: ' prefix."""
    text = str(exc).strip()
    text = re.sub(r"^\[[0-9:]+\] \S+:\d+: ", "", text)
    return text.splitlines()[0] if text else type(exc).__name__


def _choice_grammar(choices: list[str]) -> str:
    alternatives = " | ".join(json.dumps(c) for c in choices)
    return f"root ::= {alternatives}"


class GrammarCompiler:
    """Compiles Constraints against one tokenizer; thread-safe, LRU-cached.

    The xgrammar import and the tokenizer table (~0.1 s for a 49k vocabulary,
    several seconds to import) happen on first use or in `warm_up`'s thread.
    """

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        stop_token_ids: list[int],
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.stop_token_ids = sorted(set(stop_token_ids))
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._compiler: Any = None
        self.hits = 0
        self.misses = 0

    def warm_up(self) -> threading.Thread:
        """Build the compiler in a background thread (so the step loop never waits on it)."""
        thread = threading.Thread(target=self._warm, name="grammar-warm-up", daemon=True)
        thread.start()
        return thread

    def _warm(self) -> None:
        started = time.monotonic()
        self._get_compiler()
        log.info("grammar compiler ready (%.1fs)", time.monotonic() - started)

    def _get_compiler(self) -> Any:
        with self._lock:
            if self._compiler is None:
                import xgrammar as xgr
                from transformers import PreTrainedTokenizerFast

                wrapped = PreTrainedTokenizerFast(tokenizer_object=self._tokenizer)
                info = xgr.TokenizerInfo.from_huggingface(
                    wrapped, vocab_size=self.vocab_size, stop_token_ids=self.stop_token_ids
                )
                self._compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
            return self._compiler

    def compile(self, constraint: Constraint) -> Any:
        """The compiled grammar of `constraint`; GrammarError if it does not compile."""
        key = (constraint.kind, constraint.spec, tuple(constraint.choices))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return self._cache[key]
        compiler = self._get_compiler()
        try:
            compiled = self._compile(compiler, constraint)
        except Exception as exc:  # xgrammar raises RuntimeError with the reason
            raise GrammarError(f"invalid {constraint.kind}: {_clean(exc)}") from None
        with self._lock:
            self.misses += 1
            self._cache[key] = compiled
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return compiled

    @staticmethod
    def _compile(compiler: Any, constraint: Constraint) -> Any:
        kind = constraint.kind
        if kind == "json_object":
            return compiler.compile_json_schema(
                '{"type": "object"}', any_whitespace=False, separators=_SEPARATORS
            )
        if kind == "json_schema":
            return compiler.compile_json_schema(
                constraint.spec, any_whitespace=False, separators=_SEPARATORS
            )
        if kind == "regex":
            return compiler.compile_regex(constraint.spec)
        if kind == "choice":
            return compiler.compile_grammar(_choice_grammar(constraint.choices))
        return compiler.compile_grammar(constraint.spec)

    def start(self, constraint: Constraint) -> GrammarState:
        """A fresh matcher for one request, its first mask filled."""
        return GrammarState(self.compile(constraint), self.vocab_size, self.stop_token_ids)


class GrammarState:
    """One request's position in its grammar and the mask of its next token."""

    def __init__(self, compiled: Any, vocab_size: int, stop_token_ids: list[int]) -> None:
        import xgrammar as xgr

        self.matcher = xgr.GrammarMatcher(compiled)
        self.mask = xgr.allocate_token_bitmask(1, vocab_size)
        self._stop_ids = stop_token_ids
        self.matcher.fill_next_token_bitmask(self.mask, 0)

    def advance(self, token: int) -> bool:
        """Accept the sampled token; True when the output is complete and can only end.

        A token the grammar refuses (never sampled through the mask) also ends it.
        """
        if not self.matcher.accept_token(token) or self.matcher.is_terminated():
            return True
        self.matcher.fill_next_token_bitmask(self.mask, 0)
        if not self.matcher.is_completed():
            return False
        rest = self.mask.numpy()[0].view(np.uint32).copy()
        for tid in self._stop_ids:  # clear the stop tokens' bits: anything else left?
            rest[tid // 32] &= ~np.uint32(1 << (tid % 32))
        return not rest.any()


def apply_masks(logits: torch.Tensor, requests: list[Any]) -> None:
    """Set the disallowed logits of every constrained row to -inf, in place.

    `requests[i]` owns row i; a request without a `grammar` is left untouched.
    """
    rows = [i for i, req in enumerate(requests) if req.grammar is not None]
    if not rows:
        return
    import xgrammar as xgr

    vocab = logits.shape[-1]
    if logits.dtype == torch.float32:  # in place, rows picked by index (~0.9 ms for 8 rows)
        bitmask = torch.full((logits.shape[0], -(-vocab // 32)), -1, dtype=torch.int32)
        for i in rows:
            bitmask[i] = requests[i].grammar.mask[0]
        xgr.apply_token_bitmask_inplace(
            logits, bitmask.to(logits.device), vocab_size=vocab, indices=rows
        )
        return
    masks = torch.cat([requests[i].grammar.mask for i in rows]).to(logits.device)
    index = torch.tensor(rows, device=logits.device)
    sub = logits[index].float()
    xgr.apply_token_bitmask_inplace(sub, masks, vocab_size=vocab)
    logits[index] = sub.to(logits.dtype)
