"""Fixtures for the worker tests: the default model, a tiny Llama directory, paged runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from worker_paged import PagedRunner

from infer_worker import ModelBundle, load_model
from infer_worker.loader import default_gguf_path
from infer_worker.testing import write_tiny_llama


@pytest.fixture(scope="session")
def default_bundle() -> ModelBundle:
    return load_model("smollm2", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    return default_gguf_path()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def paged_runner():
    return PagedRunner
