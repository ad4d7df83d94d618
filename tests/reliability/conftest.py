"""Fixtures for the reliability tests: a tiny random Llama and a private run dir."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def rel_dir() -> Iterator[Path]:
    """A short private directory for ipc sockets (paths must stay under ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="irel-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny(rel_dir: Path) -> str:
    from infer_worker.testing import write_tiny_llama

    return str(write_tiny_llama(rel_dir / "tiny"))
