"""One engine request per choice: send, read deltas, detokenize, stop.

Invariants: a `Choice` ends exactly once (one piece carries finish_reason);
if it ends for any reason other than the engine finishing it (stop string,
error, timeout, cancellation by a disconnected client) the engine receives
an AbortRequest for it. Text after a matched stop string is never yielded.
After an abort of an unfinished choice, `settle()` waits (briefly) for the
engine's final "abort" delta so that `stats` count what the engine generated.

Failover: a choice whose engine is lost (or shuts down) before it received
any token is sent again, with the same id, to another ready engine serving
the model; once a token has arrived, losing the engine ends the choice with
the error. `client` is always the engine holding the request (aborts go there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from infer_protocol import GenerateRequest, RequestError, SamplingParams, TokenDelta

from .detokenizer import IncrementalDetokenizer
from .engine_client import EngineUnavailable
from .engine_pool import EnginePool, PooledEngine
from .errors import APIError, bad_request, engine_timeout, engine_unavailable, from_engine
from .metrics import RequestMetrics
from .model import ServedModel
from .pieces import ChoiceStats, Piece, TokenLogprob
from .stops import StopMatcher
from .validation import Sampling

SETTLE_SECONDS = 2.0  # how long an aborted choice waits for the engine's final count


def sampling_params(s: Sampling, seed: int | None) -> SamplingParams:
    return SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        min_p=s.min_p,
        presence_penalty=s.presence_penalty,
        frequency_penalty=s.frequency_penalty,
        repetition_penalty=s.repetition_penalty,
        seed=seed,
        logit_bias=dict(s.logit_bias),
        logprobs=s.logprobs,
        top_logprobs=s.top_logprobs,
    )


class Choice:
    """Drives one GenerateRequest; iterate `pieces()` once."""

    def __init__(
        self,
        pool: EnginePool,
        model: ServedModel,
        *,
        model_name: str,
        request_id: str,
        index: int,
        input_ids: list[int],
        sampling: Sampling,
        max_tokens: int,
        timeout: float,
        metrics: RequestMetrics,
    ) -> None:
        self.pool = pool
        self.client = pool.engines[0].client  # replaced by the routed engine's in pieces()
        self.engine: PooledEngine | None = None
        self.model_name = model_name
        self.model = model
        self.request_id = request_id
        self.index = index
        self.input_ids = input_ids
        self.sampling = sampling
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.metrics = metrics
        self.stats = ChoiceStats(prompt_tokens=len(input_ids))
        self.text = ""
        self._aborted: asyncio.Queue | None = None  # read by settle() for the final count
        self._timed_out = False
        # True when nothing released reaches the client before the end (a non-streamed
        # answer): a choice whose engine is lost mid-answer then starts again on another
        self.restartable = False

    def _request(self) -> GenerateRequest:
        seed = self.sampling.seed
        if seed is not None:
            seed = (seed + self.index) % (2**63)
        return GenerateRequest(
            request_id=self.request_id,
            input_ids=self.input_ids,
            sampling=sampling_params(self.sampling, seed),
            max_tokens=self.max_tokens,
            ignore_eos=self.sampling.ignore_eos,
            arrival_time=time.time(),
            constraint=self.sampling.constraint.constraint if self.sampling.constraint else None,
        )

    def _submit(self, tried: list[PooledEngine]) -> asyncio.Queue:
        """Route the request to a ready engine not yet tried and send it there."""
        while True:
            engine = self.pool.route(self.model_name, self.input_ids, exclude=tried)
            self.engine, self.client = engine, engine.client
            tried.append(engine)
            try:
                queue = self.client.open_stream(self.request_id)
                self.client.send(self._request())
                return queue
            except EngineUnavailable:
                self.client.release(self.request_id)

    def _fail_over(self, tried: list[PooledEngine], error: APIError) -> asyncio.Queue:
        """Resubmit elsewhere (nothing was streamed yet), or raise `error` if no engine is left."""
        self.client.release(self.request_id)
        lost = self.engine
        try:
            queue = self._submit(tried)
        except APIError:
            raise error from None
        if lost is not None:
            lost.failed_over += 1
        return queue

    async def pieces(self) -> AsyncIterator[Piece]:
        tried: list[PooledEngine] = []
        queue = self._submit(tried)
        detok = IncrementalDetokenizer(self.model.tokenizer)
        stops = StopMatcher(self.sampling.stop)
        finished = False
        start = last = time.monotonic()
        try:
            while True:
                item = await self._next(queue)
                if isinstance(item, EngineUnavailable | RequestError):
                    # either way the engine holds the request no more: the client sent the
                    # abort of a lost engine, and an engine that refused forgot it
                    finished = True
                    if isinstance(item, EngineUnavailable):
                        error = engine_unavailable(f"The inference engine is not available: {item}")
                        lost = True
                    else:
                        error, lost = self._engine_error(item), item.code == "shutting_down"
                    if lost and (self.stats.completion_tokens == 0 or self.restartable):
                        queue = self._fail_over(tried, error)  # raises when none is left
                        finished = False
                        if self.stats.completion_tokens:
                            detok, stops = self._restart()
                            yield Piece(self.index, "", restart=True)
                        continue
                    raise error
                if not isinstance(item, TokenDelta):
                    continue
                now = time.monotonic()
                self.stats.started = self.stats.started or bool(item.token_ids)
                if item.token_ids:
                    if self.stats.completion_tokens == 0:
                        self.metrics.first_token(now - start)
                    else:
                        self.metrics.inter_token((now - last) / len(item.token_ids))
                    last = now
                self.stats.completion_tokens += len(item.token_ids)
                text = stops.push(detok.push(item.token_ids))
                reason = None
                if not stops.stopped and item.finished:
                    text += stops.push(detok.flush())
                    text += "" if stops.stopped else stops.flush()
                if stops.stopped:
                    reason = "stop"
                    if not item.finished:
                        self.client.abort(self.request_id, reason="stop_string")
                elif item.finished:
                    reason = "length" if item.finish_reason == "length" else "stop"
                if reason is not None:
                    finished = True
                    self._record_final(item, now - start)
                self.text += text
                yield Piece(self.index, text, self._logprobs(item), reason)
                if finished:
                    return
        finally:
            if finished:
                self.client.release(self.request_id)
            else:
                keep = not self._timed_out
                self.client.abort(self.request_id, reason="client", keep_stream=keep)
                self._aborted = queue if keep else None

    def _restart(self) -> tuple[IncrementalDetokenizer, StopMatcher]:
        """Forget the answer so far (its engine is gone); fresh detokenizer and stop matcher."""
        self.stats = ChoiceStats(prompt_tokens=len(self.input_ids))
        self.text = ""
        return IncrementalDetokenizer(self.model.tokenizer), StopMatcher(self.sampling.stop)

    def _engine_error(self, error: RequestError) -> APIError:
        """The engine's refusal; a constraint it could not compile names its field."""
        constraint = self.sampling.constraint
        if error.code == "invalid_request" and constraint is not None:
            kind = constraint.constraint.kind
            if error.message.startswith(f"invalid {kind}"):
                return bad_request(f"'{constraint.param}': {error.message}", constraint.param)
        return from_engine(error.code, error.message)

    async def settle(self) -> None:
        """After an abort: take the engine's own token count from its final delta (or keep
        what arrived when the engine is gone or silent for SETTLE_SECONDS), then release."""
        queue, self._aborted = self._aborted, None
        if queue is None:
            return
        try:
            async with asyncio.timeout(SETTLE_SECONDS):
                while True:
                    item = await queue.get()
                    if not isinstance(item, TokenDelta):
                        if isinstance(item, EngineUnavailable | RequestError):
                            return
                        continue
                    self.stats.completion_tokens += len(item.token_ids)
                    self.stats.started = self.stats.started or bool(item.token_ids)
                    if item.finished:
                        if item.usage is not None:
                            self.stats.completion_tokens = item.usage.completion_tokens
                            self.stats.started = (
                                self.stats.started or item.usage.completion_tokens > 0
                            )
                            if self.stats.started:
                                self.stats.cached_tokens = item.usage.cached_tokens
                        return
        except TimeoutError:
            pass
        finally:
            self.client.release(self.request_id)

    async def _next(self, queue: asyncio.Queue) -> object:
        """The next message for this request. The silence clock starts at the call and
        restarts whenever the engine reports running requests (a Pong, every ping
        interval): a request waiting its turn, or in a long prefill, is not silent.
        504 after `timeout` seconds of neither a message nor a busy engine."""
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while True:
            quiet_since = max(quiet_since, self.client.busy_at)
            left = quiet_since + self.timeout - loop.time()
            if left <= 0:
                self._timed_out = True  # the engine is not expected to answer an abort either
                raise engine_timeout(self.timeout)
            try:
                return await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                continue

    def _logprobs(self, delta: TokenDelta) -> list[TokenLogprob] | None:
        if not self.sampling.logprobs:
            return None
        values = delta.logprobs or [0.0] * len(delta.token_ids)
        tops = delta.top_logprobs or [[] for _ in delta.token_ids]
        return [
            TokenLogprob(tid, lp, list(top)[: self.sampling.top_logprobs])
            for tid, lp, top in zip(delta.token_ids, values, tops, strict=False)
        ]

    def _record_final(self, delta: TokenDelta, elapsed: float) -> None:
        if delta.usage is not None:
            self.stats.cached_tokens = delta.usage.cached_tokens
        if delta.timing is not None:
            t = delta.timing
            self.stats.queue_ms = t.queue_ms
            self.stats.prefill_ms = t.prefill_ms
            self.stats.decode_ms = t.decode_ms
            self.stats.tokens_per_second = t.tokens_per_second
            self.stats.batch_size = t.batch_size
        else:
            self._gateway_timing(elapsed)

    def _gateway_timing(self, elapsed: float) -> None:
        """Figures measured here when the engine sent none (e.g. a stop string ended it)."""
        ttft = self.metrics.ttft or 0.0
        self.stats.prefill_ms = ttft * 1000
        self.stats.decode_ms = max(0.0, elapsed - ttft) * 1000
        if elapsed > 0:
            self.stats.tokens_per_second = self.stats.completion_tokens / elapsed
