"""Fixtures for the bench tests: real streaming test servers in subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

APP = Path(__file__).with_name("bench_sse_app.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(*flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(APP), "--port", str(port), *flags])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"test server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("test server did not start in 30 s")


def _serve(*flags: str) -> Iterator[str]:
    proc, url = start_app(*flags)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def sse_url() -> Iterator[str]:
    """A test server with /tokenize and 10 ms between chunks."""
    yield from _serve("--delay-ms", "10")


@pytest.fixture(scope="session")
def plain_url() -> Iterator[str]:
    """A test server without /tokenize that wants API key 'sekrit'."""
    yield from _serve("--delay-ms", "2", "--no-tokenize", "--api-key", "sekrit")


@pytest.fixture()
def fresh_url() -> Iterator[str]:
    """A test server of one test's own (its /stats start empty), 20 ms between chunks."""
    yield from _serve("--delay-ms", "20")


@pytest.fixture(scope="session")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A word-level tokenizer.json (with a BOS added by its post-processor)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[UNK]": 0, "<s>": 1, **{f"w{i}": i + 2 for i in range(100)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path
