"""Fixtures for the gateway tests: the SmolLM2 tokenizer, real engine and gateway processes."""

from __future__ import annotations

import pytest
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
