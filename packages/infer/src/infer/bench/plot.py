"""A PNG of throughput and latency against concurrency (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure

from infer.bench.stats import LevelSummary


def _series(levels: list[LevelSummary], field: str, key: str) -> list[float]:
    return [float("nan") if (v := getattr(s, field)[key]) is None else v for s in levels]


def plot(path: str | Path, levels: list[LevelSummary], title: str) -> None:
    """Two panels: output tokens/s and requests/s; TTFT/ITL/E2E p50 and p99 (ms, log)."""
    x = [s.concurrency for s in levels]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    fig.suptitle(title)
    left, right = fig.subplots(1, 2)

    left.plot(x, [s.output_tokens_per_s for s in levels], "o-", label="output tokens/s")
    left.set_xlabel("concurrency")
    left.set_ylabel("output tokens/s")
    twin = left.twinx()
    twin.plot(x, [s.requests_per_s for s in levels], "s--", color="tab:orange", label="requests/s")
    twin.set_ylabel("requests/s")
    left.set_title("Throughput")
    handles = left.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    left.legend(handles=handles, loc="upper left")

    for field, name, color in (
        ("ttft_ms", "TTFT", "tab:blue"),
        ("itl_ms", "ITL", "tab:green"),
        ("e2e_ms", "E2E", "tab:red"),
    ):
        right.plot(x, _series(levels, field, "p50"), "o-", color=color, label=f"{name} p50")
        right.plot(x, _series(levels, field, "p99"), "x:", color=color, label=f"{name} p99")
    right.set_yscale("log")
    right.set_xlabel("concurrency")
    right.set_ylabel("latency (ms)")
    right.set_title("Latency")
    right.legend(fontsize="small")

    for axis in (left, right):
        if len(x) > 1 and max(x) / max(min(x), 1) >= 8:
            axis.set_xscale("log", base=2)
        axis.set_xticks(x, [str(c) for c in x])
        axis.grid(True, alpha=0.3)
    fig.savefig(path, dpi=100)
