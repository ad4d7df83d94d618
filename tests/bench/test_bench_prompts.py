"""Synthetic prompts, the shared prefix, datasets and request bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infer.bench.prompts import (
    DatasetError,
    load_dataset,
    request_body,
    shared_prefix,
    synthetic_items,
    words_for_tokens,
)


def test_synthetic_prompts_are_deterministic_distinct_and_sized() -> None:
    items = synthetic_items(20, 50, 1.0, seed=3)
    assert items == synthetic_items(20, 50, 1.0, seed=3)
    assert items != synthetic_items(20, 50, 1.0, seed=4)
    assert len({i["prompt"] for i in items}) == 20
    assert all(len(i["prompt"].split()) == 50 for i in items)
    assert len(synthetic_items(1, 50, 2.0, seed=0)[0]["prompt"].split()) == 25


def test_words_for_tokens() -> None:
    assert words_for_tokens(100, 1.25) == 80
    assert words_for_tokens(1, 5.0) == 1


def test_shared_prefix_is_common_and_sized() -> None:
    assert shared_prefix(0, 1.0, 0) == ""
    a = shared_prefix(64, 1.0, 0)
    assert a == shared_prefix(64, 1.0, 0)
    assert 60 <= len(a.split()) <= 66


def test_chat_body_with_prefix_and_ignore_eos() -> None:
    body = request_body(
        {"prompt": "hi"},
        endpoint="chat",
        model="m",
        prefix="SYS",
        max_tokens=7,
        temperature=0.0,
        ignore_eos=True,
    )
    assert body["messages"] == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "hi"},
    ]
    assert body["max_tokens"] == 7 and body["ignore_eos"] is True and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.0 and body["model"] == "m"


def test_completions_body_and_messages_refused() -> None:
    body = request_body(
        {"prompt": "hi"},
        endpoint="completions",
        model="m",
        prefix="SYS",
        max_tokens=3,
        temperature=0.5,
        ignore_eos=False,
    )
    assert body["prompt"].startswith("SYS") and body["prompt"].endswith("hi")
    assert "ignore_eos" not in body and "messages" not in body
    with pytest.raises(DatasetError, match="completions"):
        request_body(
            {"messages": [{"role": "user", "content": "x"}]},
            endpoint="completions",
            model="m",
            prefix="",
            max_tokens=3,
            temperature=0.0,
            ignore_eos=True,
        )


def test_dataset_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    messages = [{"role": "user", "content": "yo", "name": "ignored"}]
    path.write_text(
        json.dumps({"prompt": "a"}) + "\n\n" + json.dumps({"messages": messages}) + "\n"
    )
    assert load_dataset(path) == [
        {"prompt": "a"},
        {"messages": [{"role": "user", "content": "yo"}]},
    ]


def test_dataset_response_format_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    path.write_text(json.dumps({"prompt": "a", "response_format": schema}) + "\n")
    items = load_dataset(path)
    assert items == [{"prompt": "a", "response_format": schema}]
    for endpoint in ("chat", "completions"):
        body = request_body(
            items[0],
            endpoint=endpoint,
            model="m",
            prefix="",
            max_tokens=4,
            temperature=0,
            ignore_eos=False,
        )
        assert body["response_format"] == schema


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "Expecting value"),
        ("[1]", "JSON object"),
        ('{"prompt": ""}', "non-empty string"),
        ('{"messages": []}', "non-empty list"),
        ('{"messages": [{"role": "user"}]}', '"content"'),
        ('{"text": "x"}', '"prompt" string or a "messages" list'),
        ('{"prompt": "x", "response_format": "json"}', '"response_format" must be an object'),
    ],
)
def test_bad_dataset_line_names_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(DatasetError, match="bad.jsonl:2: ") as info:
        load_dataset(path)
    assert reason in str(info.value)


def test_missing_or_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match="no requests"):
        load_dataset(tmp_path / "empty.jsonl")
