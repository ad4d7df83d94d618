"""Fixtures for the web UI tests: the real engine and gateways, and Debian's chromium.

One engine (a tiny random Llama, at most one running request and one waiting,
so overload is real) serves the session; gateways in front of it: an open
one, one that wants an API key, and one whose engine never answers.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from webui_platform import (
    API_KEY,
    ARTIFACTS,
    BIN,
    CHROMIUM,
    CHROMIUM_ARGS,
    Gateway,
    Watched,
    start_gateway,
    stop_process,
)

from infer_worker.testing import write_tiny_llama


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("webui")


@pytest.fixture(scope="session")
def engine_endpoint(workdir: Path) -> str:
    return f"ipc://{workdir / 'engine.ipc'}"


@pytest.fixture(scope="session")
def engine(workdir: Path, engine_endpoint: str) -> Iterator[tuple[subprocess.Popen, Path]]:
    """A real `infer-scheduler` on a tiny random Llama (max 1 running, 1 waiting): (process, log)."""
    model = write_tiny_llama(workdir / "tiny")
    log = workdir / "engine.log"
    cmd = [
        str(BIN / "infer-scheduler"),
        "--model",
        str(model),
        "--endpoint",
        engine_endpoint,
        "--device",
        "cpu",
        "--kv-cache-tokens",
        "8192",
        "--max-running",
        "1",
        "--queue-capacity",
        "1",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc, log
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def gateway(
    workdir: Path, engine: tuple[subprocess.Popen, Path], engine_endpoint: str
) -> Iterator[Gateway]:
    """The real gateway in front of the engine, ready (its /ready said 200)."""
    gw = start_gateway(
        workdir, "gateway", engine_endpoint, wait_for="/ready", timeout=180, needs=engine
    )
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def keyed_gateway(workdir: Path, engine_endpoint: str, gateway: Gateway) -> Iterator[Gateway]:
    """A second gateway on the same engine that requires API_KEY."""
    gw = start_gateway(
        workdir, "keyed", engine_endpoint, "--api-key", API_KEY, wait_for="/ready", timeout=60
    )
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def engineless_gateway(workdir: Path) -> Iterator[Gateway]:
    """A gateway whose engine endpoint has no engine behind it (engine down)."""
    gw = start_gateway(
        workdir, "engineless", f"ipc://{workdir / 'nobody.ipc'}", wait_for="/health", timeout=90
    )
    try:
        yield gw
    finally:
        gw.stop()


NO_BROWSER = (
    f"{CHROMIUM} is missing: the browser tests need Debian's chromium (apt-get install "
    "chromium); with the CI environment variable set they fail instead of skipping"
)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium driven by playwright. Without it the browser tests skip with one
    reason, except when `CI` is set (.ci/run sets it): there they are required."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(NO_BROWSER)
        pytest.skip(NO_BROWSER)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _watched(browser: Browser, width: int, height: int) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


@pytest.fixture()
def desktop(browser: Browser) -> Iterator[Watched]:
    """A fresh browser tab (own session storage) at 1280x800."""
    yield from _watched(browser, 1280, 800)


@pytest.fixture()
def phone(browser: Browser) -> Iterator[Watched]:
    """A fresh browser tab 375 px wide."""
    yield from _watched(browser, 375, 740)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
