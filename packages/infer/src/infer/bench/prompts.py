"""Request bodies for a benchmark: synthetic prompts or a JSONL dataset.

Invariants: the same seed gives the same prompts; every synthetic prompt is
different (so only `--shared-prefix-len` exercises the prefix cache); a
dataset line is either {"prompt": str} or {"messages": [{"role", "content"}]},
optionally with a "response_format" object sent as it is (structured output).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

# Short common English words: one token each (with a leading space) in the
# byte-level BPE vocabularies of Llama, SmolLM, Qwen, Mistral and GPT models.
_WORDS_TEXT = (
    "the of and to in is was for on that with as by at from his her they have this "
    "had are but not be were which one all their has an or there been more when will "
    "would who so no she other its may these two some time than first only new also "
    "any could them then over such our what into after most many those years out up "
    "like well where each how long day part made world back work city life people "
    "water house land game music film war year name line team side road book state"
)
WORDS = tuple(_WORDS_TEXT.split())


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message names the file and line."""


def synthetic_text(rng: random.Random, words: int) -> str:
    """About `words` tokens of random common words (at least one word)."""
    return " ".join(rng.choice(WORDS) for _ in range(max(1, words))).capitalize() + "."


def words_for_tokens(tokens: int, tokens_per_word: float) -> int:
    """How many words of `synthetic_text` make about `tokens` tokens."""
    return max(1, round(tokens / max(tokens_per_word, 1e-6)))


def shared_prefix(tokens: int, tokens_per_word: float, seed: int) -> str:
    """A system prompt of about `tokens` tokens, the same for every request ("" if 0)."""
    if tokens <= 0:
        return ""
    rng = random.Random(f"prefix-{seed}")
    return "You are a helpful assistant. " + synthetic_text(
        rng, words_for_tokens(tokens, tokens_per_word) - 5
    )


def synthetic_items(count: int, input_len: int, tokens_per_word: float, seed: int) -> list[dict]:
    """`count` distinct {"prompt": text} items of about `input_len` tokens each."""
    words = words_for_tokens(input_len, tokens_per_word)
    items = []
    for i in range(count):
        rng = random.Random(f"prompt-{seed}-{i}")
        items.append({"prompt": f"{i}: " + synthetic_text(rng, words - 1)})
    return items


def _check_line(obj: Any) -> dict:
    if not isinstance(obj, dict):
        raise ValueError("each line must be a JSON object")
    item = _check_text(obj)
    if "response_format" in obj:
        if not isinstance(obj["response_format"], dict):
            raise ValueError('"response_format" must be an object')
        item["response_format"] = obj["response_format"]
    return item


def _check_text(obj: dict) -> dict:
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str) or not obj["prompt"]:
            raise ValueError('"prompt" must be a non-empty string')
        return {"prompt": obj["prompt"]}
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError('"messages" must be a non-empty list')
        for m in messages:
            ok = isinstance(m, dict) and isinstance(m.get("role"), str)
            if not ok or not isinstance(m.get("content"), str):
                raise ValueError('each message needs a string "role" and "content"')
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    raise ValueError('a line needs a "prompt" string or a "messages" list')


def load_dataset(path: str | Path) -> list[dict]:
    """Items of a JSONL file (blank lines skipped); raises DatasetError on bad input."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc}") from exc
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append(_check_line(json.loads(line)))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise DatasetError(f"{path}:{number}: {exc}") from exc
    if not items:
        raise DatasetError(f"dataset {path} has no requests")
    return items


def request_body(
    item: dict,
    *,
    endpoint: str,
    model: str,
    prefix: str,
    max_tokens: int,
    temperature: float,
    ignore_eos: bool,
) -> dict:
    """The streaming JSON body for one item on `endpoint` ("chat" or "completions").

    The shared prefix becomes a leading system message (chat) or is put in
    front of the prompt (completions). A "messages" item on the completions
    endpoint raises DatasetError.
    """
    body: dict[str, Any] = {"model": model}
    if endpoint == "chat":
        messages = item.get("messages") or [{"role": "user", "content": item["prompt"]}]
        if prefix:
            messages = [{"role": "system", "content": prefix}, *messages]
        body["messages"] = messages
    else:
        if "prompt" not in item:
            raise DatasetError('the completions endpoint needs "prompt" lines, not "messages"')
        body["prompt"] = prefix + "\n\n" + item["prompt"] if prefix else item["prompt"]
    body.update(
        max_tokens=max_tokens,
        temperature=temperature,
        stream=True,
        stream_options={"include_usage": True},
    )
    if ignore_eos:
        body["ignore_eos"] = True
    if "response_format" in item:
        body["response_format"] = item["response_format"]
    return body
