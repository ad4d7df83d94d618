"""`infer bench --turns`: multi-turn conversations against a real HTTP test server
that plays a prefix cache (bench_sse_app.py --cache)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import _serve

from infer.bench.__main__ import main
from infer.bench.cache import delta
from infer.bench.conversations import NOT_SENT


def bench(flags: str) -> int:
    return main(flags.split())


@pytest.fixture()
def cache_url() -> Iterator[str]:
    yield from _serve("--delay-ms", "2", "--cache")


@pytest.fixture()
def failing_url() -> Iterator[str]:
    yield from _serve("--delay-ms", "2", "--cache", "--fail-turn", "2")


def conversation_of(body: dict) -> str:
    first_user = next(m for m in body["messages"] if m["role"] == "user")
    return first_user["content"].split(",")[0]  # "Conversation L.I"


def test_turns_resend_the_history_interleaved(cache_url: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    flags = (
        f"--url {cache_url} --turns 3 --conversations 4 --concurrency 2 --output-len 3"
        f" --input-len 10 --warmup 1 --shared-prefix-len 12 --json {out}"
    )
    before = httpx.get(cache_url + "/v1/metrics").json()["cache"]
    assert bench(flags) == 0
    text = capsys.readouterr().out
    stats = httpx.get(cache_url + "/stats").json()
    bodies = stats["bodies"][1:]  # after the warmup request
    assert len(bodies) == 12 and stats["max_inflight"] == 2

    by_conv: dict[str, list[dict]] = {}
    order = []
    for body in bodies:
        name = conversation_of(body)
        by_conv.setdefault(name, []).append(body)
        order.append(name)
    assert len(by_conv) == 4
    system = bodies[0]["messages"][0]
    assert system["role"] == "system" and 10 <= len(system["content"].split()) <= 14
    for turns in by_conv.values():
        assert [len(b["messages"]) for b in turns] == [2, 4, 6]
        for earlier, later in zip(turns, turns[1:], strict=False):
            # the whole history, the answer streamed for the last turn, a new user message
            assert later["messages"][: len(earlier["messages"])] == earlier["messages"]
            answer, user = later["messages"][len(earlier["messages"]) :]
            assert answer == {"role": "assistant", "content": "w0 w1 w2 "}
            assert user["role"] == "user" and "turn" in user["content"]
        contents = [b["messages"][-1]["content"] for b in turns]
        assert [c.split(": ")[0].split(", ")[1] for c in contents] == ["turn 1", "turn 2", "turn 3"]
    # interleaved: between two turns of a conversation the others each send one
    for name in by_conv:
        seen = [i for i, n in enumerate(order) if n == name]
        assert all(b - a >= 3 for a, b in zip(seen, seen[1:], strict=False)), order

    level = json.loads(out.read_text())["levels"][0]
    assert (level["requests"], level["completed"], level["failed"]) == (12, 12, 0)
    after = httpx.get(cache_url + "/v1/metrics").json()["cache"]
    hits = after["hits"] - before["hits"]
    queries = hits + after["misses"] - before["misses"]
    warm = stats["bodies"][0]
    warm_words = sum(len(m["content"].split()) for m in warm["messages"])
    # the warmup (before the level) is not counted; the level's 12 prompts are
    assert level["prefix_cache"]["queries"] == queries - warm_words
    assert level["prefix_cache"]["hits"] == level["server_cached_tokens"]
    # later turns find their whole history: well over half of the prompt words
    assert level["prefix_cache"]["hit_rate"] > 0.5
    assert "concurrency 2: prefix cache hit rate" in text


def test_a_failed_turn_ends_its_conversation(failing_url: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    flags = (
        f"--url {failing_url} --turns 3 --conversations 3 --concurrency 3 --output-len 2"
        f" --warmup 0 --json {out}"
    )
    assert bench(flags) == 0  # the first turns succeeded
    level = json.loads(out.read_text())["levels"][0]
    assert (level["requests"], level["completed"], level["failed"]) == (9, 3, 6)
    assert level["errors"] == {"HTTP 400: turn 2 fails": 3, NOT_SENT: 3}
    bodies = httpx.get(failing_url + "/stats").json()["bodies"]
    assert len(bodies) == 6  # the third turns were never sent


def test_requests_per_level_default_to_conversations_of_k_turns(sse_url: str, tmp_path: Path):
    """Without --conversations, --requests 7 with --turns 3 is 3 conversations (9 requests);
    a server without /v1/metrics gives no hit rate rather than a wrong one."""
    out = tmp_path / "r.json"
    flags = f"--url {sse_url} --turns 3 --requests 7 --concurrency 4 --output-len 2 --json {out}"
    assert bench(flags + " --warmup 0") == 0
    data = json.loads(out.read_text())
    assert data["conversations"] == {"per_level": 3, "turns": 3}
    level = data["levels"][0]
    assert (level["requests"], level["completed"]) == (9, 9)
    assert level["prefix_cache"] is None and level["server_cached_tokens"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("--turns 2 --endpoint completions", "--turns needs --endpoint chat"),
        ("--conversations 4", "--conversations needs --turns 2 or more"),
        ("--turns 2 --dataset {tmp}/d.jsonl", "cannot use --dataset"),
    ],
)
def test_conflicting_flags_are_refused(sse_url, tmp_path, capsys, extra, message) -> None:
    (tmp_path / "d.jsonl").write_text('{"prompt": "x"}\n')
    assert bench(f"--url {sse_url} --concurrency 1 " + extra.format(tmp=tmp_path)) == 2
    assert message in capsys.readouterr().err


def test_cache_delta_refuses_counters_that_went_back() -> None:
    assert delta((10, 5), (40, 15)) == {"hits": 30, "queries": 40, "hit_rate": 0.75}
    assert delta((10, 5), (10, 5)) == {"hits": 0, "queries": 0, "hit_rate": None}
    assert delta((10, 5), (0, 0)) is None  # an engine restarted: zeros
    assert delta(None, (1, 1)) is None
