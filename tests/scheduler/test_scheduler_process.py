"""The engine process over real ZeroMQ sockets (ipc and tcp) with a tiny Llama."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import ormsgpack
import pytest
from scheduler_helpers import gen, prompts
from scheduler_process import Client, EngineProcess
from tokenizers import Tokenizer

from infer_protocol import (
    PROTOCOL_VERSION,
    AbortRequest,
    EngineMetrics,
    MetricsQuery,
    ModelInfo,
    ModelInfoQuery,
    Ping,
    Pong,
    RequestError,
    TokenDelta,
    encode,
)


@pytest.fixture(scope="module")
def engine(tiny_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("ipc") / "engine.ipc"
    endpoint = f"ipc://{path}"
    proc = EngineProcess(
        [
            "--model",
            str(tiny_dir),
            "--endpoint",
            endpoint,
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--kv-cache-tokens",
            "4096",
            "--max-running",
            "2",
            "--queue-capacity",
            "3",
            "--served-model-name",
            "alias",
            "--max-batch-tokens",
            "256",
            "--engine-id",
            "e-one",
        ]
    )
    yield proc, endpoint, path
    proc.stop(signal.SIGKILL)


@pytest.fixture
def client(engine):
    c = Client(engine[1])
    yield c
    c.close()


def test_ready_ping_info_metrics(engine, client) -> None:
    proc, _, path = engine
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    pong = client.ask(Ping("p1"))
    assert isinstance(pong, Pong) and (pong.request_id, pong.running, pong.waiting) == ("p1", 0, 0)
    assert pong.engine_id == "e-one" and len(pong.epoch) == 12 and pong.kv_use == 0.0
    assert client.ask(Ping("p2")).epoch == pong.epoch  # one epoch per engine start
    info = client.ask(ModelInfoQuery("i1"))
    assert isinstance(info, ModelInfo) and info.request_id == "i1"
    assert info.served_model_names == ["tiny-llama", "alias"] and info.context_length == 512
    assert Tokenizer.from_str(info.tokenizer_json).encode("hello").ids
    assert info.chat_template and info.eos_token == "<|im_end|>" and info.dtype == "float32"
    metrics = client.ask(MetricsQuery("m1"))
    assert isinstance(metrics, EngineMetrics) and metrics.engine.queue_capacity == 3
    assert metrics.kv.total_blocks == 256 and metrics.cache.total_capacity == 4096


def test_streams_one_delta_per_step_to_the_right_gateway(engine) -> None:
    a, b = Client(engine[1]), Client(engine[1])
    try:
        ids = prompts(1, 20, seed=11)[0]
        a.send(gen("from-a", ids, 6))
        b.send(gen("from-b", ids, 6))
        got_a, got_b = a.collect({"from-a"}), b.collect({"from-b"})
        assert set(got_a) == {"from-a"} and set(got_b) == {"from-b"}
        for deltas in (got_a["from-a"], got_b["from-b"]):
            assert all(isinstance(d, TokenDelta) and len(d.token_ids) == 1 for d in deltas)
            assert len(deltas) == 6 and deltas[-1].finish_reason == "length"
            assert deltas[-1].usage.prompt_tokens == 20 and deltas[-1].timing is not None
            assert all(d.usage is None for d in deltas[:-1])
        tokens = [
            [d.token_ids[0] for d in got[k]] for got, k in ((got_a, "from-a"), (got_b, "from-b"))
        ]
        assert tokens[0] == tokens[1]  # greedy: same prompt, same tokens
    finally:
        a.close()
        b.close()


def test_bad_frames_are_answered_and_the_loop_survives(client) -> None:
    garbage = {
        b"\xc1\xff garbage": "",
        ormsgpack.packb([1, 2, 3]): "",
        ormsgpack.packb({"v": 99, "t": "ping", "d": {"request_id": "x"}}): "",
        ormsgpack.packb(
            {"v": PROTOCOL_VERSION, "t": "generate", "d": {"request_id": "g", "input_ids": []}}
        ): "g",
        encode(TokenDelta("wrong-direction", [1])): "",
    }
    for frame, request_id in garbage.items():
        client.send_raw(frame)
        err = client.recv()
        assert isinstance(err, RequestError) and err.code == "bad_frame"
        assert err.request_id == request_id
    too_long = client.ask(gen("long", [5] * 513, 4))
    assert isinstance(too_long, RequestError) and too_long.code == "context_too_long"
    assert too_long.request_id == "long" and "513" in too_long.message
    assert isinstance(client.ask(Ping("still-alive")), Pong)
    client.send(gen("after", [5, 6, 7], 2))
    assert client.collect({"after"})["after"][-1].finish_reason == "length"


def test_an_extra_protocol_field_fails_its_request_at_once(engine, client) -> None:
    """The error names the request (so its client is not left waiting for a timeout)."""
    body = {"request_id": "extra", "input_ids": [5, 6, 7], "max_tokens": 2, "beam_width": 4}
    started = time.monotonic()
    client.send_raw(ormsgpack.packb({"v": PROTOCOL_VERSION, "t": "generate", "d": body}))
    err = client.recv(timeout=5)
    assert time.monotonic() - started < 1.0
    assert isinstance(err, RequestError) and err.request_id == "extra"
    assert err.code == "bad_frame" and "beam_width" in err.message


def test_another_protocol_version_is_logged_once(engine, client) -> None:
    proc = engine[0]
    frame = ormsgpack.packb({"v": PROTOCOL_VERSION + 7, "t": "ping", "d": {"request_id": "p"}})
    for _ in range(3):
        client.send_raw(frame)
        err = client.recv()
        assert isinstance(err, RequestError) and err.code == "bad_frame"
        assert f"version {PROTOCOL_VERSION + 7}" in err.message
    lines = [
        line for line in proc.lines if f"speaks protocol version {PROTOCOL_VERSION + 7}," in line
    ]
    assert len(lines) == 1 and f"this engine {PROTOCOL_VERSION}" in lines[0]


def test_abort_mid_stream(client) -> None:
    client.send(gen("abort-me", prompts(1, 30, seed=12)[0], 400))
    first = client.recv()
    assert isinstance(first, TokenDelta) and first.request_id == "abort-me"
    client.send(AbortRequest("abort-me"))
    rest = client.collect({"abort-me"})["abort-me"]
    assert rest[-1].finish_reason == "abort" and rest[-1].usage.completion_tokens < 400
    metrics = client.ask(MetricsQuery("m2"))
    assert metrics.kv.running_requests == 0 and metrics.cache.protected_size == 0


def test_overload_is_refused_at_once_and_serving_goes_on(client) -> None:
    ids = [f"burst-{i}" for i in range(10)]
    for i, rid in enumerate(ids):
        client.send(gen(rid, prompts(1, 10, seed=20 + i)[0], 12))
    got = client.collect(set(ids))
    finals = {rid: msgs[-1] for rid, msgs in got.items()}
    refused = [r for r, m in finals.items() if isinstance(m, RequestError)]
    served = [r for r, m in finals.items() if isinstance(m, TokenDelta)]
    assert set(refused) | set(served) == set(ids)
    assert all(finals[r].code == "overloaded" and len(got[r]) == 1 for r in refused)
    assert all(finals[r].finish_reason == "length" for r in served)
    # 2 run and 3 wait at most at any moment (the burst may span two loop passes)
    assert 5 <= len(refused) <= 7 and 3 <= len(served) <= 5
    client.send(gen("after-burst", [9, 9, 9], 2))
    assert client.collect({"after-burst"})["after-burst"][-1].finish_reason == "length"
    stats = client.ask(MetricsQuery("m3")).engine
    assert stats.failed_requests >= len(refused) and stats.queue_size == 0


def test_sigterm_fails_running_requests_and_removes_the_socket(engine, client) -> None:
    proc, _, path = engine
    client.send(gen("cut-short", prompts(1, 30, seed=13)[0], 400))
    assert isinstance(client.recv(), TokenDelta)
    assert proc.stop(signal.SIGTERM) == 0
    msgs = client.collect({"cut-short"}, timeout=10)["cut-short"]
    assert isinstance(msgs[-1], RequestError) and msgs[-1].code == "shutting_down"
    assert not path.exists()
    assert any("engine stopped" in line for line in proc.lines)


def test_tcp_endpoint_from_env_and_sigint(tiny_dir) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    proc = EngineProcess(
        ["--model", str(tiny_dir), "--device", "cpu", "--kv-cache-tokens", "1024"],
        env={"ZMQ_ENDPOINT": endpoint},
    )
    c = Client(endpoint)
    try:
        assert c.ask(Ping("tcp")).request_id == "tcp"
        c.send(gen("t", [1, 2, 3], 3))
        assert c.collect({"t"})["t"][-1].usage.completion_tokens == 3
        assert proc.stop(signal.SIGINT) == 0
    finally:
        c.close()
        proc.stop(signal.SIGKILL)


def test_stop_while_the_grammar_compiler_warms_up_exits_cleanly(tiny_dir) -> None:
    """A signal soon after 'engine ready' lands while the grammar warm-up thread is in
    xgrammar's C++ code; exiting under it used to abort (std::terminate, exit -6)."""
    for delay in (0.05, 0.2, 0.5):
        proc = EngineProcess(
            ["--model", str(tiny_dir), "--device", "cpu", "--kv-cache-tokens", "1024"],
            env={"ZMQ_ENDPOINT": f"ipc://{tiny_dir.parent}/warm-{delay}.ipc"},
        )
        time.sleep(delay)
        assert proc.stop(signal.SIGINT) == 0, "".join(proc.lines[-10:])


@pytest.mark.parametrize(
    ("flag", "value"), [("--queue-capacity", "0"), ("--float32-min-batch", "-1")]
)
def test_flag_values_the_engine_cannot_honour_end_it_with_status_2(tiny_dir, flag, value) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "infer_scheduler.cli", "--model", str(tiny_dir), flag, value],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert flag.removeprefix("--").replace("-", "_") in done.stderr or flag in done.stderr
