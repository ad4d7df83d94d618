"""Text table, JSON and PNG plot from synthetic level summaries."""

from __future__ import annotations

import json
from pathlib import Path

from infer.bench.plot import plot
from infer.bench.report import text_report, write_json
from infer.bench.sse import RequestResult
from infer.bench.stats import summarize

META = {"url": "http://h:1", "model": "m", "endpoint": "chat", "tokenizer": "test"}


def levels():
    out = []
    for c in (1, 4, 16):
        results = [
            RequestResult(ok=True, ttft=0.01 * c, itl=[0.005] * 3, e2e=0.03 * c, output_tokens=4)
            for _ in range(c * 2)
        ]
        results.append(RequestResult(ok=False, error="HTTP 429: overloaded"))
        out.append(summarize(c, results, 0.1 * c, "test"))
    return out


def test_text_report_has_a_row_per_level_and_the_errors() -> None:
    text = text_report(META, levels())
    lines = text.splitlines()
    assert "model: m" in lines[0] and "counted with: test" in lines[1]
    rows = [line.split() for line in lines[4:7]]
    assert [r[0] for r in rows] == ["1", "4", "16"]
    assert rows[1][1] == "8/9" and rows[1][2] == "80.0" and rows[1][4] == "40.0/40.0/40.0"
    assert "concurrency 16: 1 failed: HTTP 429: overloaded" in text


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json(path, META, levels())
    data = json.loads(path.read_text())
    assert data["model"] == "m"
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 4, 16]
    assert data["levels"][2]["errors"] == {"HTTP 429: overloaded": 1}
    assert data["levels"][0]["itl_ms"]["p50"] == 5.0


def test_plot_writes_a_png_even_without_latencies(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    data = levels()
    data.append(summarize(32, [RequestResult(ok=False, error="x")], 1.0, "test"))
    plot(path, data, "title")
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000
