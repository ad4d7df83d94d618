"""The overload gate in isolation: when it shuts, what opens it, and the refusal clock."""

from __future__ import annotations

from infer_protocol import RequestError, TokenDelta, Usage
from infer_server import admission
from infer_server.admission import OverloadGate, RefusalClock


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def overloaded(rid: str = "r-1") -> RequestError:
    return RequestError(rid, "overloaded", "the waiting queue is full (50 requests)")


def test_the_gate_shuts_on_an_overloaded_answer_and_opens_when_a_place_frees():
    clock = Clock()
    gate = OverloadGate(hold=0.25, clock=clock)
    assert not gate.shut
    gate.observe(TokenDelta("a-0", [5]))  # a token, not an end: nothing changes
    gate.observe(overloaded())
    assert gate.shut
    gate.observe(TokenDelta("a-0", [6]))
    assert gate.shut
    final = TokenDelta("a-0", [7], finish_reason="length", usage=Usage(3, 3))
    gate.observe(final)
    assert not gate.shut, "a finished request frees a place"
    gate.observe(overloaded())
    gate.observe(RequestError("b-0", "context_too_long", "too long"))
    assert not gate.shut, "any other error ends a request"
    gate.observe(overloaded())
    gate.observe(RequestError("", "bad_frame", "x"))
    assert gate.shut, "an error about no request frees nothing"
    gate.open()  # what the client does when it sends an abort or loses the engine
    assert not gate.shut


def test_the_gate_opens_by_itself_after_hold_seconds():
    clock = Clock()
    gate = OverloadGate(hold=0.25, clock=clock)
    gate.observe(overloaded())
    clock.now += 0.2
    assert gate.shut
    clock.now += 0.06
    assert not gate.shut, "places other gateways free are invisible: the gate must not stick"


def test_the_refusal_time_reaches_the_http_request_that_sent_it():
    clock = Clock()
    gate = OverloadGate(clock=clock)
    mine = RefusalClock()
    token = admission._current.set(mine)
    try:
        gate.watch("r-1")
    finally:
        admission._current.reset(token)
    gate.watch("r-2")  # no HTTP request in this context: not timed
    clock.now = 123.0
    gate.observe(overloaded("r-2"))
    assert mine.refused_at is None
    gate.observe(overloaded("r-1"))
    assert mine.refused_at == 123.0
    gate.forget("r-1")
    clock.now = 124.0
    gate.observe(overloaded("r-1"))
    assert mine.refused_at == 123.0
