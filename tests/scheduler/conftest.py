"""Fixtures of the scheduler tests: a tiny random Llama (written once) and engine helpers."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from infer_worker.testing import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", context_length=512)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_dir: Path):
    from infer_worker import load_model

    return load_model(str(tiny_dir), device="cpu", dtype="float32")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run this area's in-process models on one thread (restored afterwards).

    Their tensors are tiny, and on a shared 2-core machine OpenMP threads that
    spin while another process holds the other core slow steps down 10x.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
