"""benchmarks/serve_and_bench.py: the candidate/baseline ratio table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_and_bench.py"


def load_script():
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling serving.py
    spec = importlib.util.spec_from_file_location("serve_and_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def level(c: int, tok_s: float, ttft: float | None) -> dict:
    lat = {"p50": ttft, "p99": ttft}
    return {
        "concurrency": c,
        "output_tokens_per_s": tok_s,
        "ttft_ms": lat,
        "itl_ms": lat,
        "e2e_ms": lat,
    }


def test_ratios_and_table() -> None:
    script = load_script()
    candidate = {"levels": [level(1, 30.0, 50.0), level(8, 200.0, None)]}
    baseline = {"levels": [level(1, 20.0, 100.0), level(8, 100.0, 80.0)]}
    rows = script.ratios(candidate, baseline)
    assert rows[0]["out tok/s"] == {"candidate": 30.0, "baseline": 20.0, "ratio": 1.5}
    assert rows[0]["TTFT p50"]["ratio"] == 0.5
    assert rows[1]["out tok/s"]["ratio"] == 2.0 and rows[1]["TTFT p50"]["ratio"] is None
    table = script.ratio_table(rows).splitlines()
    assert "30.0 vs 20.0 = 1.50x" in table[1] and "50.0 vs 100.0 = 0.50x" in table[1]
    assert table[2].split()[0] == "8" and " - " in table[2] + " "
