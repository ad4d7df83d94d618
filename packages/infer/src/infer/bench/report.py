"""The benchmark's outputs: a plain-text table and a JSON file.

The JSON layout (stable, other tools read it): {"url", "model",
"endpoint", "tokenizer", "config": {flags}, "started_at", "levels":
[LevelSummary.to_dict(), ...]}.
"""

from __future__ import annotations

import json
from pathlib import Path

from infer.bench.stats import LevelSummary


def _triple(values: dict[str, float | None]) -> str:
    parts = [values.get(k) for k in ("p50", "p90", "p99")]
    return "/".join("-" if v is None else f"{v:.1f}" for v in parts)


COLUMNS = (
    ("conc", 5),
    ("ok/total", 9),
    ("out tok/s", 10),
    ("req/s", 7),
    ("TTFT p50/p90/p99 ms", 24),
    ("ITL p50/p90/p99 ms", 22),
    ("E2E p50/p90/p99 ms", 26),
)


def table(levels: list[LevelSummary]) -> str:
    """One row per level, then the errors of any level that had failures."""
    header = "  ".join(name.rjust(width) for name, width in COLUMNS)
    rows = [header, "-" * len(header)]
    for s in levels:
        cells = (
            str(s.concurrency),
            f"{s.completed}/{s.requests}",
            f"{s.output_tokens_per_s:.1f}",
            f"{s.requests_per_s:.2f}",
            _triple(s.ttft_ms),
            _triple(s.itl_ms),
            _triple(s.e2e_ms),
        )
        rows.append("  ".join(c.rjust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)))
    for s in levels:
        cache = s.prefix_cache
        if cache and cache.get("hit_rate") is not None:
            rows.append(
                f"concurrency {s.concurrency}: prefix cache hit rate {100 * cache['hit_rate']:.1f}%"
                f" ({cache['hits']} of {cache['queries']} prompt tokens, server /v1/metrics)"
            )
    for s in levels:
        for message, count in s.errors.items():
            rows.append(f"concurrency {s.concurrency}: {count} failed: {message}")
    return "\n".join(rows)


def text_report(meta: dict, levels: list[LevelSummary]) -> str:
    """The header lines (url, model, endpoint, token counting) and the table."""
    lines = [
        f"url: {meta['url']}  model: {meta['model']}  endpoint: {meta['endpoint']}",
        f"output tokens counted with: {meta['tokenizer']}",
        table(levels),
    ]
    return "\n".join(lines)


def results_json(meta: dict, levels: list[LevelSummary]) -> dict:
    """The JSON document: `meta` plus the levels."""
    return {**meta, "levels": [s.to_dict() for s in levels]}


def write_json(path: str | Path, meta: dict, levels: list[LevelSummary]) -> None:
    """Write `results_json` to `path` (indented, UTF-8)."""
    Path(path).write_text(json.dumps(results_json(meta, levels), indent=2) + "\n", "utf-8")
