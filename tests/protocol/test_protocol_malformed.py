"""Malformed frames raise ProtocolError, and nothing else."""

from __future__ import annotations

import ormsgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infer_protocol as p


def pack(value: object) -> bytes:
    return ormsgpack.packb(value, option=ormsgpack.OPT_NON_STR_KEYS)


def env(tag: str, body: object, version: object = p.PROTOCOL_VERSION) -> bytes:
    return pack({"v": version, "t": tag, "d": body})


GOOD_GEN = {"request_id": "r1", "input_ids": [1, 2, 3]}
valid_frame = p.encode(p.GenerateRequest(request_id="r1", input_ids=[1, 2, 3]))

MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "not msgpack": (b"\xc1\xc1\xc1", "MessagePack"),
    "truncated": (valid_frame[: len(valid_frame) // 2], "MessagePack"),
    "trailing garbage": (valid_frame + b"\x00", "MessagePack"),
    "top-level list": (pack([1, "generate", GOOD_GEN]), "envelope"),
    "top-level int": (pack(7), "envelope"),
    "top-level string": (pack("hello"), "envelope"),
    "missing body": (pack({"v": 1, "t": "ping"}), "keys"),
    "extra envelope key": (pack({"v": 1, "t": "ping", "d": {"request_id": ""}, "x": 1}), "keys"),
    "wrong version": (env("ping", {"request_id": "a"}, version=p.PROTOCOL_VERSION + 1), "version"),
    "version as string": (env("ping", {"request_id": "a"}, version="1"), "version"),
    "version as bool": (env("ping", {"request_id": "a"}, version=True), "version"),
    "unknown type": (env("launch_missiles", {}), "unknown message type"),
    "type not a string": (env(5, {}), "unknown message type"),  # type: ignore[arg-type]
    "body not a map": (env("ping", ["a"]), "body"),
    "missing field": (env("generate", {"request_id": "r1"}), "missing"),
    "extra field": (env("generate", {**GOOD_GEN, "bogus": 1}), "unknown fields"),
    "string token ids": (env("generate", {**GOOD_GEN, "input_ids": "hello"}), "list"),
    "string inside token ids": (env("generate", {**GOOD_GEN, "input_ids": [1, "a"]}), "integer"),
    "negative token id": (env("generate", {**GOOD_GEN, "input_ids": [1, -5]}), ">= 0"),
    "empty input ids": (env("generate", {**GOOD_GEN, "input_ids": []}), "empty"),
    "negative max_tokens": (env("generate", {**GOOD_GEN, "max_tokens": -1}), "max_tokens"),
    "bool max_tokens": (env("generate", {**GOOD_GEN, "max_tokens": True}), "integer"),
    "float max_tokens": (env("generate", {**GOOD_GEN, "max_tokens": 1.5}), "integer"),
    "NaN temperature": (
        env("generate", {**GOOD_GEN, "sampling": {"temperature": float("nan")}}),
        "finite",
    ),
    "inf top_p": (env("generate", {**GOOD_GEN, "sampling": {"top_p": float("inf")}}), "finite"),
    "top_p out of range": (env("generate", {**GOOD_GEN, "sampling": {"top_p": 1.5}}), "top_p"),
    "sampling not a map": (env("generate", {**GOOD_GEN, "sampling": 3}), "SamplingParams"),
    "unknown sampling field": (
        env("generate", {**GOOD_GEN, "sampling": {"tempo": 1.0}}),
        "unknown fields",
    ),
    "logit bias string key": (
        env("generate", {**GOOD_GEN, "sampling": {"logit_bias": {"a": 1.0}}}),
        "integer",
    ),
    "too many top_logprobs": (
        env("generate", {**GOOD_GEN, "sampling": {"top_logprobs": 21}}),
        "top_logprobs",
    ),
    "empty request id": (env("generate", {**GOOD_GEN, "request_id": ""}), "empty"),
    "request id not a string": (env("abort", {"request_id": 12}), "string"),
    "bad finish reason": (
        env("token_delta", {"request_id": "r", "finish_reason": "exploded"}),
        "finish_reason",
    ),
    "bad error code": (
        env("request_error", {"request_id": "r", "code": "oops", "message": "m"}),
        "code",
    ),
    "bad top logprob pair": (
        env("token_delta", {"request_id": "r", "top_logprobs": [[[1, 2, 3]]]}),
        "pair",
    ),
    "usage with negative count": (
        env(
            "token_delta",
            {"request_id": "r", "usage": {"prompt_tokens": -1, "completion_tokens": 0}},
        ),
        "prompt_tokens",
    ),
    "bool where string": (env("ping", {"request_id": True}), "string"),
    "deeply nested": (env("ping", {"request_id": [[[[[[[[[[["x"]]]]]]]]]]]}), "string"),
}


def test_at_least_twenty_distinct_malformed_frames() -> None:
    assert len(MALFORMED) >= 20
    assert len(set(frame for frame, _ in MALFORMED.values())) == len(MALFORMED)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_frame_raises_protocol_error(name: str) -> None:
    frame, needle = MALFORMED[name]
    with pytest.raises(p.ProtocolError) as info:
        p.decode(frame)
    assert needle.lower() in str(info.value).lower(), str(info.value)


def test_the_error_names_the_request_when_it_can_be_read() -> None:
    """A valid envelope whose body names a request id: the error carries it."""
    with pytest.raises(p.ProtocolError) as info:
        p.decode(env("generate", {**GOOD_GEN, "bogus": 1}))
    assert info.value.request_id == "r1" and info.value.peer_version is None
    with pytest.raises(p.ProtocolError) as info:
        p.decode(env("generate", {**GOOD_GEN, "sampling": {"tempo": 1.0}}))
    assert info.value.request_id == "r1"
    for frame in (
        env("abort", {"request_id": 12}),
        pack({"v": 1, "t": "ping"}),
        b"\xc1",
        env("ping", {"request_id": "a"}, version=p.PROTOCOL_VERSION + 1),
    ):
        with pytest.raises(p.ProtocolError) as info:
            p.decode(frame)
        assert info.value.request_id == ""


def test_another_version_is_told_apart_from_a_bad_frame() -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.decode(env("ping", {"request_id": "a"}, version=p.PROTOCOL_VERSION + 1))
    assert info.value.peer_version == p.PROTOCOL_VERSION + 1
    for version in ("1", True, None):
        with pytest.raises(p.ProtocolError) as info:
            p.decode(env("ping", {"request_id": "a"}, version=version))
        assert info.value.peer_version is None


def test_non_bytes_input() -> None:
    with pytest.raises(p.ProtocolError):
        p.decode("not bytes")  # type: ignore[arg-type]


def test_oversized_frame() -> None:
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.decode(b"\x00" * (p.MAX_FRAME_BYTES + 1))


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(p.ProtocolError, ValueError)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        msg = p.decode(data)
    except p.ProtocolError:
        return
    assert isinstance(msg, p.MESSAGE_TYPES)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from([cls.TAG for cls in p.MESSAGE_TYPES]),
    st.dictionaries(
        st.sampled_from(
            [
                "request_id",
                "input_ids",
                "sampling",
                "max_tokens",
                "token_ids",
                "code",
                "message",
                "served_model_names",
                "context_length",
                "tokenizer_json",
                "engine",
                "cache",
                "usage",
            ]
        ),
        msgpack_values,
        max_size=6,
    ),
)
def test_fuzz_structured_bodies(tag: str, body: dict) -> None:
    try:
        msg = p.decode(env(tag, body))
    except p.ProtocolError:
        return
    assert isinstance(msg, p.MESSAGE_TYPES)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, len(valid_frame) - 1), st.integers(0, 255))
def test_fuzz_bit_flips(pos: int, byte: int) -> None:
    frame = bytearray(valid_frame)
    frame[pos] = byte
    try:
        msg = p.decode(bytes(frame))
    except p.ProtocolError:
        return
    assert isinstance(msg, p.MESSAGE_TYPES)
