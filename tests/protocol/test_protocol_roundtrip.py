"""Every message type survives encode -> decode unchanged (hypothesis-generated)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infer_protocol as p

ids = st.text(min_size=1, max_size=40)
token_ids = st.lists(st.integers(min_value=0, max_value=2**31 - 1), max_size=50)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30)
nonneg = st.floats(allow_nan=False, allow_infinity=False, min_value=0.0, max_value=1e9)
counts = st.integers(min_value=0, max_value=2**40)

sampling = st.builds(
    p.SamplingParams,
    temperature=st.floats(min_value=0.0, max_value=2.0),
    top_p=st.floats(min_value=0.0, max_value=1.0),
    top_k=st.integers(min_value=-1, max_value=1000),
    min_p=st.floats(min_value=0.0, max_value=1.0),
    presence_penalty=st.floats(min_value=-2.0, max_value=2.0),
    frequency_penalty=st.floats(min_value=-2.0, max_value=2.0),
    repetition_penalty=st.floats(min_value=0.01, max_value=10.0),
    seed=st.none() | st.integers(min_value=-(2**63), max_value=2**64 - 1),
    logit_bias=st.dictionaries(st.integers(min_value=0, max_value=200_000), finite, max_size=5),
    logprobs=st.booleans(),
    top_logprobs=st.integers(min_value=0, max_value=20),
)
usage = st.builds(p.Usage, counts, counts, counts)
timing = st.builds(p.RequestTiming, nonneg, nonneg, nonneg, nonneg, counts)
pairs = st.lists(st.tuples(st.integers(0, 2**31), finite), max_size=4)

STRATEGIES = {
    p.GenerateRequest: st.builds(
        p.GenerateRequest,
        request_id=ids,
        input_ids=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=50),
        sampling=sampling,
        max_tokens=st.integers(min_value=1, max_value=2**31),
        stop_token_ids=token_ids,
        ignore_eos=st.booleans(),
        arrival_time=nonneg,
    ),
    p.AbortRequest: st.builds(p.AbortRequest, request_id=ids, reason=st.text(max_size=20)),
    p.Ping: st.builds(p.Ping, request_id=st.text(max_size=20)),
    p.ModelInfoQuery: st.builds(p.ModelInfoQuery, request_id=st.text(max_size=20)),
    p.MetricsQuery: st.builds(p.MetricsQuery, request_id=st.text(max_size=20)),
    p.TokenDelta: st.builds(
        p.TokenDelta,
        request_id=ids,
        token_ids=token_ids,
        logprobs=st.none() | st.lists(finite, max_size=5),
        top_logprobs=st.none() | st.lists(pairs, max_size=5),
        finish_reason=st.none() | st.sampled_from(p.FINISH_REASONS),
        usage=st.none() | usage,
        timing=st.none() | timing,
    ),
    p.RequestError: st.builds(
        p.RequestError,
        request_id=st.text(max_size=20),
        code=st.sampled_from(p.ERROR_CODES),
        message=st.text(max_size=100),
    ),
    p.Pong: st.builds(
        p.Pong,
        request_id=st.text(max_size=20),
        running=counts,
        waiting=counts,
        engine_id=st.text(max_size=20),
        epoch=st.text(max_size=12),
        kv_use=st.floats(min_value=0.0, max_value=1.0),
    ),
    p.ModelInfo: st.builds(
        p.ModelInfo,
        request_id=st.text(max_size=20),
        served_model_names=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3),
        context_length=st.integers(min_value=1, max_value=2**20),
        tokenizer_json=st.text(max_size=200),
        chat_template=st.none() | st.text(max_size=200),
        bos_token=st.none() | st.text(max_size=10),
        eos_token=st.none() | st.text(max_size=10),
        bos_token_id=st.none() | st.integers(0, 2**31),
        eos_token_ids=token_ids,
        add_bos_token=st.booleans(),
        vocab_size=counts,
    ),
    p.EngineMetrics: st.builds(
        p.EngineMetrics,
        request_id=st.text(max_size=20),
        engine=st.builds(
            p.EngineStats,
            total_requests=counts,
            completed_requests=counts,
            failed_requests=counts,
            total_tokens_generated=counts,
            avg_queue_time_ms=nonneg,
            avg_prefill_time_ms=nonneg,
            avg_decode_time_ms=nonneg,
            queue_size=counts,
            queue_capacity=counts,
            concurrent_requests=counts,
        ),
        cache=st.builds(p.CacheStats, hit_rate=st.floats(0.0, 1.0), hits=counts, node_count=counts),
        kv=st.builds(p.KvStats, used_blocks=counts, total_blocks=counts),
    ),
}


def test_every_message_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(p.MESSAGE_TYPES)
    assert len({cls.TAG for cls in p.MESSAGE_TYPES}) == len(p.MESSAGE_TYPES)


@pytest.mark.parametrize("cls", p.MESSAGE_TYPES, ids=lambda c: c.__name__)
def test_roundtrip(cls: type) -> None:
    @settings(max_examples=60, deadline=None)
    @given(STRATEGIES[cls])
    def check(msg: p.Message) -> None:
        frame = p.encode(msg)
        assert isinstance(frame, bytes)
        back = p.decode(frame)
        assert type(back) is cls
        assert back == msg
        assert attrs.asdict(back) == attrs.asdict(msg)

    check()


def test_defaults_are_the_seeds() -> None:
    params = p.SamplingParams()
    assert (params.temperature, params.top_p, params.top_k) == (0.7, 0.9, 50)
    assert p.GenerateRequest(request_id="r", input_ids=[1]).max_tokens == 512


def test_messages_are_frozen() -> None:
    msg = p.Ping(request_id="x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        msg.request_id = "y"  # type: ignore[misc]


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(TypeError):
        p.encode({"v": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        p.encode(p.SamplingParams())  # type: ignore[arg-type]
