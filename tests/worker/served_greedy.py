"""Greedy completions from a model served by a real engine and gateway (a helper module)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
from server_procs import Engine, Gateway


def served_greedy(
    model: str, served_name: str, prompts: list[list[int]], new_tokens: int, endpoint: str
) -> tuple[list[str], int]:
    """(texts in prompt order, completion tokens) of one batched /v1/completions request
    with temperature 0 and ignore_eos, through the official client."""
    engine = Engine(model, endpoint, "--block-size", "8")
    gateway = None
    try:
        engine.wait_ready()
        gateway = Gateway(engine.endpoint).wait_ready()
        result = gateway.openai().completions.create(
            model=served_name,
            prompt=prompts,
            max_tokens=new_tokens,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        texts = [c.text for c in sorted(result.choices, key=lambda c: c.index)]
        return texts, result.usage.completion_tokens
    finally:
        if gateway is not None:
            gateway.stop()
        engine.stop()
