"""Fixtures for the gateway tests: the SmolLM2 tokenizer, real engine and gateway processes."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_procs import Engine, Gateway
from tokenizers import Tokenizer


@pytest.fixture(scope="session")
def smol_tokenizer() -> Tokenizer:
    """SmolLM2's tokenizer, built from the default GGUF (as the engine does)."""
    from infer_worker.gguf_loader import GGUFFile
    from infer_worker.loader import default_gguf_path

    return GGUFFile(default_gguf_path()).tokenizer()


@pytest.fixture(scope="session")
def smol_template() -> str:
    from infer_worker.gguf_loader import GGUFFile
    from infer_worker.loader import default_gguf_path

    return GGUFFile(default_gguf_path()).chat_template()


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    """A short private directory for ipc sockets (paths must stay under ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="isrv-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model(run_dir: Path) -> str:
    from infer_worker.testing import write_tiny_llama

    return str(write_tiny_llama(run_dir / "tiny"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model: str, run_dir: Path) -> Iterator[Engine]:
    engine = Engine(tiny_model, f"ipc://{run_dir}/tiny.ipc").wait_ready()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def tiny_gateway(tiny_engine: Engine) -> Iterator[Gateway]:
    gw = Gateway(tiny_engine.endpoint).wait_ready()
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def smol_engine(run_dir: Path) -> Iterator[Engine]:
    engine = Engine("smollm2", f"ipc://{run_dir}/smol.ipc").wait_ready()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def smol_gateway(smol_engine: Engine) -> Iterator[Gateway]:
    gw = Gateway(smol_engine.endpoint).wait_ready()
    yield gw
    gw.stop()
