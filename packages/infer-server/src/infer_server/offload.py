"""CPU-heavy request work off the event loop, so one big request never stalls the others.

Chat templating and tokenizing run in a bounded thread pool (`THREADS`
threads; the tokenizer releases the GIL while it encodes, jinja2 yields it
every few milliseconds). A text of `BIG_TEXT` characters or more is
tokenized in a worker process instead: freeing the tokenizer's result for
about a million tokens holds the GIL for 0.1-0.4 s (measured with
SmolLM2's tokenizer), which in a thread would still stall every open
stream. The worker sends the ids back as one JSON array in bytes, so the
gateway never builds or frees a million Python ints for /tokenize.

Invariant: the results are exactly `tokenizer.encode(text,
add_special_tokens=False).ids` (with `bos` put first when given), whichever
path ran.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

from tokenizers import Tokenizer

THREADS = 4
BIG_TEXT = 256 * 1024
WORKER_NICENESS = 10
T = TypeVar("T")

# the worker process's tokenizer, set once by _start_worker (one per process, never shared)
_worker_tokenizer: Tokenizer | None = None


def _start_worker(tokenizer_json: str) -> None:
    global _worker_tokenizer
    os.nice(WORKER_NICENESS)  # batch work: the gateway's own threads come first for the CPU
    _worker_tokenizer = Tokenizer.from_str(tokenizer_json)


def encode_ids(tokenizer: Tokenizer, text: str, bos: int | None) -> list[int]:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def _ready() -> bool:
    return _worker_tokenizer is not None


def _encode_json(text: str, bos: int | None) -> tuple[int, bytes]:
    """In the worker: (count, the ids as a JSON array)."""
    assert _worker_tokenizer is not None
    ids = encode_ids(_worker_tokenizer, text, bos)
    return len(ids), json.dumps(ids, separators=(",", ":")).encode()


class Offload:
    """The gateway's thread pool and (started on first need) tokenizer worker process."""

    def __init__(self, threads: int = THREADS) -> None:
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="infer-cpu")
        self._worker: ProcessPoolExecutor | None = None
        self._worker_for: str | None = None
        self._lock = threading.Lock()  # _worker_of runs in pool threads

    def prestart(self, tokenizer_json: str) -> None:
        """Start the worker process for this tokenizer now, from a pool thread (spawning
        one costs the starting thread a fork and up to seconds), not at the first big text."""
        self._threads.submit(lambda: self._worker_of(tokenizer_json).submit(_ready).result())

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in the thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    async def ids_json(
        self, tokenizer: Tokenizer, tokenizer_json: str, text: str, bos: int | None
    ) -> tuple[int, bytes]:
        """(count, JSON array of the ids) of `text`; big texts go to the worker process."""
        if len(text) < BIG_TEXT:

            def small() -> tuple[int, bytes]:
                ids = encode_ids(tokenizer, text, bos)
                return len(ids), json.dumps(ids, separators=(",", ":")).encode()

            return await self.run(small)
        # submitted from a thread: a first submit spawns the process (see prestart)
        job = await self.run(
            lambda: self._worker_of(tokenizer_json).submit(_encode_json, text, bos)
        )
        return await asyncio.wrap_future(job)

    def _worker_of(self, tokenizer_json: str) -> ProcessPoolExecutor:
        with self._lock:
            return self._worker_locked(tokenizer_json)

    def _worker_locked(self, tokenizer_json: str) -> ProcessPoolExecutor:
        if self._worker is None or self._worker_for != tokenizer_json:
            if self._worker is not None:
                self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(tokenizer_json,),
            )
            self._worker_for = tokenizer_json
        return self._worker

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._worker is not None:
                self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None
