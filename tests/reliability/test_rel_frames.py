"""Hostile frames on the engine's ROUTER: it logs them, keeps serving, and stays small."""

from __future__ import annotations

import random

import ormsgpack
import psutil
import pytest
from rel_engine_probe import EngineProbe
from rel_procs import Engine, wait_until

from infer_protocol import GenerateRequest, Ping, Pong, SamplingParams, TokenDelta, encode


@pytest.fixture
def engine(tiny, rel_dir):
    eng = Engine(tiny, f"ipc://{rel_dir}/frames.ipc").wait_ready()
    yield eng
    eng.stop()


def hostile_frames(rng: random.Random, n: int):
    """Random bytes, truncated and bit-flipped valid frames, wrong versions and types."""
    valid = encode(GenerateRequest("g", [5, 6, 7], SamplingParams(), max_tokens=2))
    for i in range(n):
        kind = i % 6
        if kind == 0:
            yield rng.randbytes(rng.randint(0, 2048))
        elif kind == 1:
            yield valid[: rng.randint(0, len(valid) - 1)]
        elif kind == 2:
            flipped = bytearray(valid)
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            yield bytes(flipped)
        elif kind == 3:
            yield ormsgpack.packb({"v": rng.randint(2, 10**6), "t": "ping", "d": {}})
        elif kind == 4:
            yield ormsgpack.packb({"v": 1, "t": "nope", "d": [rng.random()] * 100})
        else:
            yield encode(TokenDelta("wrong-direction", [1, 2, 3]))


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def ping(probe: EngineProbe) -> bool:
    probe.sock.send(encode(Ping("alive?")))
    while True:
        msg = probe.recv(10000)
        if isinstance(msg, Pong):
            return True


def test_hostile_frames_are_logged_and_memory_stays_flat(engine):
    rng = random.Random(9)
    attacker = EngineProbe(engine.endpoint)  # never reads its answers
    checker = EngineProbe(engine.endpoint)
    try:
        for frame in hostile_frames(rng, 3000):  # warm-up: allocator pools, log buffers
            attacker.send_raw(frame)
        assert ping(checker)
        # the grammar compiler's warm-up (xgrammar, transformers: ~80 MiB) runs after ready
        assert wait_until(lambda: "grammar compiler ready" in engine.output, 60)
        before = rss(engine.popen.pid)
        for frame in hostile_frames(rng, 30000):
            attacker.send_raw(frame)
        # multipart junk too: several frames in one message
        for _ in range(500):
            attacker.sock.send_multipart([b"x", rng.randbytes(64), b""])
        assert ping(checker)
        grown = rss(engine.popen.pid) - before
        assert grown < 32 * 1024 * 1024, f"RSS grew {grown / 2**20:.1f} MiB over 30k frames"
        assert "bad frame" in engine.output
        assert "more bad frames dropped unanswered" in engine.output  # the flood is throttled

        # a frame past MAXMSGSIZE is refused by libzmq before it is buffered
        big = EngineProbe(engine.endpoint)
        big.sock.send(b"\x00" * (80 * 1024 * 1024), copy=False)
        assert ping(checker)
        assert rss(engine.popen.pid) - before < 48 * 1024 * 1024
        big.close()
    finally:
        attacker.close()

    # and it still serves a real request end to end
    request = GenerateRequest("real", [5, 6, 7], SamplingParams(), max_tokens=3, ignore_eos=True)
    checker.sock.send(encode(request))
    deltas = []
    assert wait_until(lambda: _collect(checker, deltas), 30)
    assert sum(len(d.token_ids) for d in deltas) == 3
    checker.close()


def _collect(probe: EngineProbe, deltas: list) -> bool:
    try:
        msg = probe.recv(1000)
    except TimeoutError:
        return False
    if isinstance(msg, TokenDelta) and msg.request_id == "real":
        deltas.append(msg)
        return msg.finished
    return False


def test_bad_frame_limiter_admits_a_burst_then_a_steady_rate():
    from infer_scheduler.frame_guard import BadFrameLimiter

    now = [0.0]
    limiter = BadFrameLimiter(per_second=10, burst=5, clock=lambda: now[0])
    assert [limiter.admit() for _ in range(8)] == [True] * 5 + [False] * 3
    assert limiter.take_suppressed() == 3 and limiter.take_suppressed() == 0
    now[0] += 0.25  # 2.5 tokens come back
    assert [limiter.admit() for _ in range(4)] == [True, True, False, False]
    now[0] += 100  # never more than the burst
    assert sum(limiter.admit() for _ in range(20)) == 5
    assert limiter.total == 32
