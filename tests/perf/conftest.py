"""Fixtures for the CPU engine speed-path tests: the default model in bf16, greedy paged runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from infer_worker import ModelBundle, load_model
from infer_worker.cpp_kernels import start_build
from infer_worker.testing import write_tiny_llama


@pytest.fixture(scope="session")
def bf16_bundle() -> ModelBundle:
    # the int8 / int4 paths quantize dense bf16 weights: the GGUF is dequantized
    return load_model("smollm2", device="cpu", dtype="bfloat16", gguf_weights="dequantize")


@pytest.fixture(scope="session")
def cpp_kernel() -> None:
    """The C++ decode kernel, built (or loaded from the cache) before the test runs."""
    start_build(wait=True)


@pytest.fixture
def default_f32_model(tmp_path: Path):
    """A fresh float32 model (a tiny random-weight Llama) the test may modify."""
    return load_model(str(write_tiny_llama(tmp_path / "tiny")), device="cpu", dtype="float32").model
