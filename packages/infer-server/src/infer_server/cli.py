"""Command line of infer-server (placeholder until its issue lands)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infer-server")
    parser.parse_args(argv)
    return 0
