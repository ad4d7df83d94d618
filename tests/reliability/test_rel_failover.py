"""Failover for real: SIGKILL one of two engines under 32 concurrent streams.

Each engine runs one thread and at most 4 requests at once, so when one is
killed most of its share is still waiting in its queue (no token yet): those
must be resubmitted to the other engine and succeed; only streams that had
already received text may end with an error event. New requests succeed, and
the restarted engine (new epoch) rejoins and takes traffic again.
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from rel_procs import Engine, Gateway, metrics, wait_until

ENGINE_FLAGS = ("--threads", "1", "--max-running", "4", "--kv-cache-tokens", "16384")
MESSAGES = [{"role": "user", "content": "tell me a story"}]


class Outcome:
    def __init__(self) -> None:
        self.text = ""
        self.error: Exception | None = None
        self.text_before_error = False


def stream(gw: Gateway, out: Outcome, started: threading.Semaphore) -> None:
    client = gw.openai(timeout=60)
    try:
        chunks = client.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=120,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                if not out.text:
                    started.release()
                out.text += chunk.choices[0].delta.content
    except Exception as exc:  # an error event mid-stream, or an HTTP error
        out.error, out.text_before_error = exc, bool(out.text)


def by_id(gw: Gateway) -> dict[str, dict]:
    return {e["id"]: e for e in metrics(gw)["engines"]}


def ask(gw: Gateway) -> str:
    r = gw.openai(timeout=60).chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=4, extra_body={"ignore_eos": True}
    )
    return r.choices[0].finish_reason


@pytest.fixture
def pool(tiny, rel_dir):
    engines = {
        name: Engine(tiny, f"ipc://{rel_dir}/{name}.ipc", *ENGINE_FLAGS, "--engine-id", name)
        for name in ("e0", "e1")
    }
    for engine in engines.values():
        engine.wait_ready()
    gw = Gateway(
        engines["e0"].endpoint,
        "--engine-endpoint",
        engines["e1"].endpoint,
        "--routing",
        "round_robin",
        "--engine-ping-timeout",
        "1.5",
    ).wait_ready()
    state = {"gw": gw, **engines}
    yield state
    gw.stop()
    for name in ("e0", "e1"):
        state[name].stop()


def test_killing_one_of_two_engines_fails_no_unstarted_request(pool):
    gw, victim = pool["gw"], pool["e1"]
    epoch = by_id(gw)["e1"]["epoch"]
    outs = [Outcome() for _ in range(32)]
    started = threading.Semaphore(0)
    with ThreadPoolExecutor(32) as workers:
        for out in outs:
            workers.submit(stream, gw, out, started)
        for _ in range(6):  # a few streams (on both engines) have text: kill e1 now
            assert started.acquire(timeout=60), "streams never started"
        os.kill(victim.popen.pid, signal.SIGKILL)
    failed = [o for o in outs if o.error is not None]
    assert all(o.text_before_error for o in failed), [repr(o.error) for o in failed]
    assert len(outs) - len(failed) >= 16  # e0's share and e1's unstarted ones at least
    after = by_id(gw)
    assert after["e1"]["requests_failed_over"] >= 1, after
    assert after["e1"]["state"] in ("dead", "not_ready") and after["e0"]["state"] == "ready"
    assert metrics(gw)["engine"]["completed_requests"] >= len(outs) - len(failed)

    # new requests succeed (all on e0), and /ready stays 200: e0 serves the model
    assert httpx.get(gw.url + "/ready").status_code == 200
    for _ in range(4):
        assert ask(gw) == "length"

    victim.popen.wait(10)
    pool["e1"] = victim.restart().wait_ready()
    assert wait_until(lambda: by_id(gw)["e1"]["state"] == "ready", 30), by_id(gw)
    back = by_id(gw)["e1"]
    assert back["epoch"] != epoch
    routed = back["requests_routed"]
    for _ in range(4):  # round robin: half of these go to the restarted engine
        assert ask(gw) == "length"
    again = by_id(gw)["e1"]
    assert again["requests_routed"] - routed == 2 and again["completed_requests"] == 2


def test_a_non_streamed_answer_whose_engine_dies_mid_answer_starts_again_elsewhere(pool):
    """Nothing of a non-streamed answer has reached its client until the end, so an engine
    lost mid-answer costs time, not the request: the choice starts again on the other one."""
    gw, victim = pool["gw"], pool["e1"]
    client = gw.openai(timeout=120)
    answers: list = []

    def plain() -> None:
        answers.append(
            client.completions.create(
                model="tiny",
                prompt="Once upon a time",
                max_tokens=1500,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
        )

    with ThreadPoolExecutor(2) as workers:
        jobs = [workers.submit(plain) for _ in range(2)]  # round robin: one on each engine
        # e1 is mid-answer: its engine reports a running request and has made tokens
        assert wait_until(lambda: by_id(gw)["e1"]["running"] >= 1, 30), by_id(gw)
        assert wait_until(lambda: metrics(gw)["engine"]["total_tokens_generated"] >= 64, 30)
        assert not any(job.done() for job in jobs)
        os.kill(victim.popen.pid, signal.SIGKILL)
        for job in jobs:
            job.result()  # no exception: both answered 200
    for answer in answers:
        assert answer.usage.completion_tokens == 1500
        assert answer.choices[0].finish_reason == "length"
    assert answers[0].choices[0].text == answers[1].choices[0].text  # greedy: the same answer
    assert by_id(gw)["e1"]["requests_failed_over"] == 1
