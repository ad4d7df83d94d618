"""`infer bench --turns` against the real gateway and a tiny engine: the hit rate it
reads from /v1/metrics is the engine's own count of the level's cached prompt tokens."""

from __future__ import annotations

import json
from pathlib import Path

from server_procs import Gateway

from infer.bench.__main__ import main


def test_multi_turn_hit_rate_comes_from_the_gateway(tiny_gateway: Gateway, tmp_path: Path):
    out = tmp_path / "r.json"
    flags = (
        f"--url {tiny_gateway.url} --turns 3 --conversations 3 --concurrency 2 --requests 1"
        f" --input-len 40 --output-len 4 --warmup 1 --json {out}"
    )
    assert main(flags.split()) == 0
    level = json.loads(out.read_text())["levels"][0]
    assert (level["requests"], level["completed"]) == (9, 9)
    cache = level["prefix_cache"]
    # the engine counts each request's cached prompt tokens once, as its usage reports them
    assert cache["hits"] == level["server_cached_tokens"] > 0
    assert cache["queries"] == level["server_prompt_tokens"]
    # turns 2 and 3 resend their history (well over half of all prompt tokens)
    assert cache["hit_rate"] > 0.4
