"""Fixtures of the launcher tests: console scripts of this environment, free ports."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from launcher_util import BIN, REPO, free_port, run_cli, script  # noqa: F401


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


@pytest.fixture
def port() -> int:
    return free_port()
