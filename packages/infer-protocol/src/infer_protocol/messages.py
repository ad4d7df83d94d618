"""Every message exchanged between the gateway and the engine.

All classes are frozen attrs classes; each carries a stable `TAG` used in
the wire envelope. Field converters validate types and ranges, so an
instance that exists is a valid message. Every message has a `request_id`:
for generation it names the request, for queries (Ping, ModelInfoQuery,
MetricsQuery) it correlates the answer with the question.
"""

from __future__ import annotations

from typing import ClassVar

from attrs import field, frozen

from .checks import (
    at_least,
    between,
    each_at_least,
    int_float_map,
    list_of,
    nested,
    not_empty,
    optional,
    pair_of,
    to_bool,
    to_float,
    to_int,
    to_str,
)

FINISH_REASONS = ("stop", "length", "abort")
CONSTRAINT_KINDS = ("json_object", "json_schema", "regex", "choice", "grammar")
ERROR_CODES = (
    "overloaded",
    "context_too_long",
    "invalid_request",
    "bad_frame",
    "shutting_down",
    "internal",
)


def _finish_reason(value: object) -> str | None:
    if value is None:
        return None
    text = to_str(value)
    if text not in FINISH_REASONS:
        raise ValueError(f"finish_reason must be one of {FINISH_REASONS}, got {text!r}")
    return text


def _constraint_kind(value: object) -> str:
    text = to_str(value)
    if text not in CONSTRAINT_KINDS:
        raise ValueError(f"constraint kind must be one of {CONSTRAINT_KINDS}, got {text!r}")
    return text


def _error_code(value: object) -> str:
    text = to_str(value)
    if text not in ERROR_CODES:
        raise ValueError(f"code must be one of {ERROR_CODES}, got {text!r}")
    return text


# ---------------------------------------------------------------- parameters


@frozen
class SamplingParams:
    """How to pick each next token. Defaults are the seed README's.

    temperature 0 means greedy. top_k <= 0 disables top-k; top_p 1 and
    min_p 0 disable those filters. top_logprobs > 0 implies logprobs.
    """

    temperature: float = field(default=0.7, converter=to_float, validator=between(0.0, 100.0))
    top_p: float = field(default=0.9, converter=to_float, validator=between(0.0, 1.0))
    top_k: int = field(default=50, converter=to_int, validator=at_least(-1))
    min_p: float = field(default=0.0, converter=to_float, validator=between(0.0, 1.0))
    presence_penalty: float = field(default=0.0, converter=to_float, validator=between(-2.0, 2.0))
    frequency_penalty: float = field(default=0.0, converter=to_float, validator=between(-2.0, 2.0))
    repetition_penalty: float = field(
        default=1.0, converter=to_float, validator=between(0.01, 10.0)
    )
    seed: int | None = field(
        default=None, converter=optional(to_int), validator=between(-(2**63), 2**64 - 1)
    )
    logit_bias: dict[int, float] = field(factory=dict, converter=int_float_map)
    logprobs: bool = field(default=False, converter=to_bool)
    top_logprobs: int = field(default=0, converter=to_int, validator=between(0, 20))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


@frozen
class Constraint:
    """What a request's output must match; the engine masks logits to keep it so.

    `spec` is the JSON Schema text (json_schema), the regex (regex) or the
    EBNF grammar (grammar); empty for json_object. `choices` lists the
    allowed outputs of a choice constraint, and only that kind has them.
    """

    kind: str = field(converter=_constraint_kind)
    spec: str = field(default="", converter=to_str)
    choices: list[str] = field(factory=list, converter=list_of(to_str))

    def __attrs_post_init__(self) -> None:
        if self.kind == "choice" and not self.choices:
            raise ValueError("a choice constraint needs at least one choice")
        if self.kind != "choice" and self.choices:
            raise ValueError(f"a {self.kind} constraint takes no choices")
        if self.kind in ("json_schema", "regex", "grammar") and not self.spec:
            raise ValueError(f"a {self.kind} constraint needs a spec")


@frozen
class Usage:
    """Token counts of one finished request."""

    prompt_tokens: int = field(converter=to_int, validator=at_least(0))
    completion_tokens: int = field(converter=to_int, validator=at_least(0))
    cached_tokens: int = field(default=0, converter=to_int, validator=at_least(0))


@frozen
class RequestTiming:
    """The seed's per-request `performance` figures, measured in the engine."""

    queue_ms: float = field(converter=to_float, validator=at_least(0.0))
    prefill_ms: float = field(converter=to_float, validator=at_least(0.0))
    decode_ms: float = field(converter=to_float, validator=at_least(0.0))
    tokens_per_second: float = field(converter=to_float, validator=at_least(0.0))
    batch_size: int = field(converter=to_int, validator=at_least(0))


@frozen
class EngineStats:
    """The seed's `engine` object of /v1/metrics."""

    total_requests: int = field(default=0, converter=to_int, validator=at_least(0))
    completed_requests: int = field(default=0, converter=to_int, validator=at_least(0))
    failed_requests: int = field(default=0, converter=to_int, validator=at_least(0))
    total_tokens_generated: int = field(default=0, converter=to_int, validator=at_least(0))
    avg_queue_time_ms: float = field(default=0.0, converter=to_float, validator=at_least(0.0))
    avg_prefill_time_ms: float = field(default=0.0, converter=to_float, validator=at_least(0.0))
    avg_decode_time_ms: float = field(default=0.0, converter=to_float, validator=at_least(0.0))
    queue_size: int = field(default=0, converter=to_int, validator=at_least(0))
    queue_capacity: int = field(default=0, converter=to_int, validator=at_least(0))
    concurrent_requests: int = field(default=0, converter=to_int, validator=at_least(0))


@frozen
class CacheStats:
    """The seed's `cache` object of /v1/metrics (sizes in tokens)."""

    hit_rate: float = field(default=0.0, converter=to_float, validator=between(0.0, 1.0))
    hits: int = field(default=0, converter=to_int, validator=at_least(0))
    misses: int = field(default=0, converter=to_int, validator=at_least(0))
    evictable_size: int = field(default=0, converter=to_int, validator=at_least(0))
    protected_size: int = field(default=0, converter=to_int, validator=at_least(0))
    total_cached: int = field(default=0, converter=to_int, validator=at_least(0))
    total_capacity: int = field(default=0, converter=to_int, validator=at_least(0))
    evictions: int = field(default=0, converter=to_int, validator=at_least(0))
    node_count: int = field(default=0, converter=to_int, validator=at_least(0))


@frozen
class KvStats:
    """KV block pool occupancy (not in the seed's JSON; used for Prometheus)."""

    block_size: int = field(default=0, converter=to_int, validator=at_least(0))
    total_blocks: int = field(default=0, converter=to_int, validator=at_least(0))
    used_blocks: int = field(default=0, converter=to_int, validator=at_least(0))
    running_requests: int = field(default=0, converter=to_int, validator=at_least(0))
    waiting_requests: int = field(default=0, converter=to_int, validator=at_least(0))
    total_prompt_tokens: int = field(default=0, converter=to_int, validator=at_least(0))


# ------------------------------------------------------- gateway -> engine


@frozen
class GenerateRequest:
    """Generate up to `max_tokens` tokens after `input_ids`."""

    TAG: ClassVar[str] = "generate"

    request_id: str = field(converter=to_str, validator=not_empty)
    input_ids: list[int] = field(converter=list_of(to_int), validator=[not_empty, each_at_least(0)])
    sampling: SamplingParams = field(factory=SamplingParams, converter=nested(SamplingParams))
    max_tokens: int = field(default=512, converter=to_int, validator=at_least(1))
    stop_token_ids: list[int] = field(
        factory=list, converter=list_of(to_int), validator=each_at_least(0)
    )
    ignore_eos: bool = field(default=False, converter=to_bool)
    arrival_time: float = field(default=0.0, converter=to_float, validator=at_least(0.0))
    constraint: Constraint | None = field(default=None, converter=optional(nested(Constraint)))


@frozen
class AbortRequest:
    """Stop a request at the engine's next step and free its blocks."""

    TAG: ClassVar[str] = "abort"

    request_id: str = field(converter=to_str, validator=not_empty)
    reason: str = field(default="client", converter=to_str)


@frozen
class Ping:
    """Liveness probe; answered by a Pong with the same request_id."""

    TAG: ClassVar[str] = "ping"

    request_id: str = field(converter=to_str)


@frozen
class ModelInfoQuery:
    """Ask for ModelInfo."""

    TAG: ClassVar[str] = "model_info_query"

    request_id: str = field(converter=to_str)


@frozen
class MetricsQuery:
    """Ask for EngineMetrics."""

    TAG: ClassVar[str] = "metrics_query"

    request_id: str = field(converter=to_str)


# ------------------------------------------------------- engine -> gateway


@frozen
class TokenDelta:
    """New tokens of one request from one engine step.

    `logprobs`, when present, has one entry per token id; `top_logprobs` one
    list of (token_id, logprob) pairs per token id. `finish_reason`, `usage`
    and `timing` are set on the last delta of a request and only there.
    """

    TAG: ClassVar[str] = "token_delta"

    request_id: str = field(converter=to_str, validator=not_empty)
    token_ids: list[int] = field(
        factory=list, converter=list_of(to_int), validator=each_at_least(0)
    )
    logprobs: list[float] | None = field(default=None, converter=optional(list_of(to_float)))
    top_logprobs: list[list[tuple[int, float]]] | None = field(
        default=None, converter=optional(list_of(list_of(pair_of(to_int, to_float))))
    )
    finish_reason: str | None = field(default=None, converter=_finish_reason)
    usage: Usage | None = field(default=None, converter=optional(nested(Usage)))
    timing: RequestTiming | None = field(default=None, converter=optional(nested(RequestTiming)))

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@frozen
class RequestError:
    """A request (or a frame) the engine refused or failed; final for that id."""

    TAG: ClassVar[str] = "request_error"

    request_id: str = field(converter=to_str)
    code: str = field(converter=_error_code)
    message: str = field(converter=to_str)


@frozen
class Pong:
    """Answer to Ping: who the engine is and how loaded it is (protocol version 3).

    `engine_id` is stable across restarts of the same engine (its `--engine-id`,
    else derived from its host and endpoint); `epoch` changes on every start, so a
    gateway can tell a restarted engine (empty KV cache, no open requests) from a
    live one. `kv_use` is the fraction of KV cache blocks in use.
    """

    TAG: ClassVar[str] = "pong"

    request_id: str = field(converter=to_str)
    running: int = field(default=0, converter=to_int, validator=at_least(0))
    waiting: int = field(default=0, converter=to_int, validator=at_least(0))
    engine_id: str = field(default="", converter=to_str)
    epoch: str = field(default="", converter=to_str)
    kv_use: float = field(default=0.0, converter=to_float, validator=between(0.0, 1.0))


@frozen
class ModelInfo:
    """What the gateway needs to serve the model: names, limits, tokenizer."""

    TAG: ClassVar[str] = "model_info"

    request_id: str = field(converter=to_str)
    served_model_names: list[str] = field(converter=list_of(to_str), validator=not_empty)
    context_length: int = field(converter=to_int, validator=at_least(1))
    tokenizer_json: str = field(converter=to_str)
    chat_template: str | None = field(default=None, converter=optional(to_str))
    bos_token: str | None = field(default=None, converter=optional(to_str))
    eos_token: str | None = field(default=None, converter=optional(to_str))
    bos_token_id: int | None = field(default=None, converter=optional(to_int))
    eos_token_ids: list[int] = field(factory=list, converter=list_of(to_int))
    add_bos_token: bool = field(default=False, converter=to_bool)
    vocab_size: int = field(default=0, converter=to_int, validator=at_least(0))
    device: str = field(default="cpu", converter=to_str)
    dtype: str = field(default="float32", converter=to_str)


@frozen
class EngineMetrics:
    """Answer to MetricsQuery: the seed's `engine` and `cache` objects."""

    TAG: ClassVar[str] = "engine_metrics"

    request_id: str = field(converter=to_str)
    engine: EngineStats = field(factory=EngineStats, converter=nested(EngineStats))
    cache: CacheStats = field(factory=CacheStats, converter=nested(CacheStats))
    kv: KvStats = field(factory=KvStats, converter=nested(KvStats))


Message = (
    GenerateRequest
    | AbortRequest
    | Ping
    | ModelInfoQuery
    | MetricsQuery
    | TokenDelta
    | RequestError
    | Pong
    | ModelInfo
    | EngineMetrics
)

MESSAGE_TYPES: tuple[type, ...] = (
    GenerateRequest,
    AbortRequest,
    Ping,
    ModelInfoQuery,
    MetricsQuery,
    TokenDelta,
    RequestError,
    Pong,
    ModelInfo,
    EngineMetrics,
)
