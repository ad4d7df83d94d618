"""The engine core, without I/O: add_request, abort, step -> TokenDeltas.

Invariants:
- every request added gets exactly one final TokenDelta (finish_reason set,
  with usage and timing), unless it is refused by add_request (EngineError)
  or taken back by `abort_all`;
- an abort takes effect at the start of the next step and frees the
  request's blocks there;
- when no request is live, every KV block is free or held by the prefix
  cache (`leaked_blocks() == 0`).
"""

from __future__ import annotations

import time
from typing import Any

from infer_protocol import EngineMetrics, GenerateRequest, KvStats, TokenDelta
from infer_worker import KVCache, make_generator

from .block_pool import BlockPool
from .cache_manager import CacheManager
from .grammar import GrammarCompiler, GrammarError
from .metrics import EngineCounters, request_timing, request_usage
from .model_runner import ModelRunner
from .options import EngineOptions, check_kv_dtype, num_kv_blocks
from .request import Request
from .scheduler import Scheduler


class EngineError(Exception):
    """A request the engine refuses; `code` is a protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Engine:
    """Continuous batching over a paged KV cache for one loaded model."""

    def __init__(self, bundle: Any, options: EngineOptions | None = None) -> None:
        self.bundle = bundle
        self.options = options or EngineOptions()
        if self.options.compile != "off" and getattr(bundle.model, "group_weights", False):
            raise ValueError(
                f"--compile {self.options.compile}: the compiled decode graph cannot use "
                "weights held in group formats (GGUF quantized files); use --compile off"
            )
        config = bundle.config
        self.context_length: int = config.context_length
        self.vocab_size: int = config.vocab_size
        self.eos_ids = frozenset(config.eos_token_ids)
        bs = self.options.block_size
        kv_dtype = self.options.kv_dtype_for(bundle.dtype)
        check_kv_dtype(kv_dtype, bundle.device)
        per_token = KVCache.bytes_per_token(config, kv_dtype)
        num_blocks = num_kv_blocks(self.options, per_token, bundle.device)
        self.pool = BlockPool(num_blocks, bs)
        # dynamic NTK: cached K/V depend on the prompt length of the sequence that wrote
        # them, so no prefix cache; LongRoPE (Phi-3, row_offset): keyed by factor set
        row_offset = getattr(bundle.model, "rotary_row_offset", None)
        length_rope = config.rope_depends_on_length and row_offset is None
        prefix_cache = self.options.enable_prefix_cache and not length_rope
        self.cache = CacheManager(self.pool, prefix_cache, row_offset)
        self.scheduler = Scheduler(
            self.cache,
            self.options.max_running,
            self.options.batch_tokens_for(bundle.device),
            row_offset,
        )
        self.runner = ModelRunner(
            bundle,
            num_blocks,
            bs,
            kv_dtype,
            self.options.cuda_graphs,
            self.options.compile,
            self.options.compile_buckets,
        )
        self.grammars = GrammarCompiler(bundle.tokenizer, self.vocab_size, sorted(self.eos_ids))
        self.requests: dict[str, Request] = {}
        self.counters = EngineCounters()
        self._aborts: list[str] = []

    # ------------------------------------------------------------ inputs
    @property
    def kv_capacity_tokens(self) -> int:
        return self.pool.num_blocks * self.pool.block_size

    def kv_summary(self) -> str:
        """The KV cache as the engine's ready line states it: dtype, tokens, bytes."""
        cache = self.runner.kv_cache
        dtype = str(cache.dtype).removeprefix("torch.")
        if cache.key_scale is not None:
            dtype += "+" + str(cache.key_scale.dtype).removeprefix("torch.") + "_scales"
        per_token = cache.bytes_per_slot
        return (
            f"kv_dtype={dtype} kv_tokens={self.kv_capacity_tokens} "
            f"kv_bytes_per_token={per_token} "
            f"kv_bytes={self.kv_capacity_tokens * per_token}"
        )

    @property
    def has_work(self) -> bool:
        return bool(self.requests)

    def add_request(self, msg: GenerateRequest, enforce_capacity: bool = True) -> Request:
        """Queue a request, or raise EngineError(code, message) refusing it."""
        self.counters.total_requests += 1
        try:
            self._check(msg, enforce_capacity)
            grammar = self._grammar(msg)
        except EngineError:
            self.counters.failed_requests += 1
            raise
        req = Request(
            request_id=msg.request_id,
            prompt_ids=msg.input_ids,
            params=msg.sampling,
            max_tokens=msg.max_tokens,
            stop_token_ids=frozenset(msg.stop_token_ids),
            ignore_eos=msg.ignore_eos,
            generator=make_generator(msg.sampling.seed, self.bundle.device),
            grammar=grammar,
        )
        self.requests[req.request_id] = req
        self.scheduler.add(req)
        return req

    def _check(self, msg: GenerateRequest, enforce_capacity: bool) -> None:
        n = len(msg.input_ids)
        if msg.request_id in self.requests:
            raise EngineError("invalid_request", f"request id {msg.request_id!r} is already in use")
        if enforce_capacity and len(self.scheduler.waiting) >= self.options.queue_capacity:
            raise EngineError(
                "overloaded", f"the waiting queue is full ({self.options.queue_capacity} requests)"
            )
        if n > self.context_length:
            raise EngineError(
                "context_too_long",
                f"prompt has {n} tokens; the model's context length is {self.context_length}",
            )
        if n > self.kv_capacity_tokens:
            raise EngineError(
                "context_too_long",
                f"prompt has {n} tokens; the KV cache holds {self.kv_capacity_tokens}",
            )
        bad = [t for t in msg.input_ids if t >= self.vocab_size]
        if bad:
            raise EngineError(
                "invalid_request",
                f"token id {bad[0]} is out of the vocabulary (size {self.vocab_size})",
            )

    def _grammar(self, msg: GenerateRequest) -> Any:
        """The request's GrammarState (compiled or taken from the cache), or None."""
        if msg.constraint is None:
            return None
        try:
            return self.grammars.start(msg.constraint)
        except GrammarError as exc:
            raise EngineError("invalid_request", str(exc)) from None

    def abort(self, request_id: str) -> bool:
        """Ask for a request to stop at the next step; False if it is not live."""
        if request_id not in self.requests:
            return False
        self._aborts.append(request_id)
        return True

    def abort_all(self) -> list[str]:
        """Drop every live request at once (shutdown); return their ids, oldest first."""
        ids = list(self.requests)
        for req in list(self.requests.values()):
            self.scheduler.remove(req)
        self.requests.clear()
        self._aborts.clear()
        self.counters.failed_requests += len(ids)
        return ids

    # ------------------------------------------------------------ the step
    def step(self) -> list[TokenDelta]:
        """Run one scheduling step and one forward pass; return this step's deltas."""
        out: list[TokenDelta] = []
        for request_id in self._aborts:
            req = self.requests.get(request_id)
            if req is not None:
                self.scheduler.remove(req)
                out.append(self._final(req, "abort", []))
        self._aborts.clear()

        batch = self.scheduler.schedule()
        for req in batch.finished:
            out.append(self._final(req, req.finish_reason or "length", []))
        if not batch.items:
            return out
        now = time.monotonic()
        for req, _ in batch.items:
            if req.first_scheduled is None:
                req.first_scheduled = now
            req.steps += 1
            req.batch_size_sum += len(batch.items)

        sampled, result = self.runner.run(batch.items)
        for req, n in batch.items:
            was_prefill = req.remaining > 1
            req.num_computed += n
            if was_prefill:
                self.cache.cache_prefix(req)

        now = time.monotonic()
        for row, req in enumerate(sampled):
            token = result.token_ids[row]
            req.all_ids.append(token)
            if req.first_token is None:
                req.first_token = now
            self.counters.total_tokens_generated += 1
            logprobs, top = self._logprobs(req, result, row)
            reason = self._stop_reason(req, token)
            if reason is None:
                out.append(TokenDelta(req.request_id, [token], logprobs, top))
            else:
                self.scheduler.remove(req)
                out.append(self._final(req, reason, [token], logprobs, top))
        return out

    def _stop_reason(self, req: Request, token: int) -> str | None:
        if req.grammar is not None and req.grammar.advance(token):
            return "stop"  # the grammar matched a whole output and can only end
        if token in req.stop_token_ids or (not req.ignore_eos and token in self.eos_ids):
            return "stop"
        if req.num_output >= req.max_tokens or req.num_tokens >= self.context_length:
            return "length"
        return None

    @staticmethod
    def _logprobs(req: Request, result: Any, row: int) -> tuple[list | None, list | None]:
        params = req.params
        logprobs = top = None
        if (params.logprobs or params.top_logprobs > 0) and result.logprobs is not None:
            logprobs = [result.logprobs[row]]
        if params.top_logprobs > 0 and result.top_logprobs is not None:
            top = [list(result.top_logprobs[row][: params.top_logprobs])]
        return logprobs, top

    def _final(
        self,
        req: Request,
        reason: str,
        tokens: list[int],
        logprobs: list | None = None,
        top: list | None = None,
    ) -> TokenDelta:
        """The last delta of a request; forgets the request."""
        req.finish_reason = reason
        req.finished_at = time.monotonic()
        self.requests.pop(req.request_id, None)
        timing = request_timing(req, req.finished_at)
        self.counters.record_finish(reason, timing)
        return TokenDelta(
            req.request_id,
            tokens,
            logprobs,
            top,
            finish_reason=reason,
            usage=request_usage(req),
            timing=timing,
        )

    # ------------------------------------------------------------ reports
    def leaked_blocks(self) -> int:
        """Blocks held by neither the free list, the cache, nor a live request (0 when healthy)."""
        held = sum(len(r.block_table) - r.num_cached_blocks for r in self.scheduler.running)
        cached = self.cache.cache.total_size // self.pool.block_size if self.cache.cache else 0
        return self.pool.num_used - cached - held

    def metrics(self, request_id: str = "") -> EngineMetrics:
        sched = self.scheduler
        kv = KvStats(
            block_size=self.pool.block_size,
            total_blocks=self.pool.num_blocks,
            used_blocks=self.pool.num_used,
            running_requests=len(sched.running),
            waiting_requests=len(sched.waiting),
            total_prompt_tokens=sum(r.num_prompt for r in self.requests.values()),
        )
        engine = self.counters.stats(
            len(sched.waiting), self.options.queue_capacity, len(sched.running)
        )
        return EngineMetrics(request_id, engine=engine, cache=self.cache.stats(), kv=kv)
