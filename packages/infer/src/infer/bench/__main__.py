"""`python -m infer.bench ...`: the same as `infer bench ...`."""

from __future__ import annotations

import argparse
import sys

from infer.bench.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="infer bench",
        description="Measure TTFT, inter-token latency, end-to-end latency and throughput.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
