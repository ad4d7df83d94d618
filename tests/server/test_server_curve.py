"""An engine on tcp://127.0.0.1 with CurveZMQ keys: allowed gateways are served, others refused.

Real processes: one tiny-model engine with a key pair and a directory of
allowed gateway keys, gateways with the right key, no key, an unknown key
and the wrong engine key. Keys come from `infer keys`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zmq.auth
from server_procs import Engine, Gateway, free_port

from infer_protocol.curve import write_keypair

REFUSED_WITHIN_S = 30.0


def _keys(directory: Path, name: str) -> tuple[Path, Path]:
    infer = Path(sys.executable).parent / "infer"
    subprocess.run([str(infer), "keys", str(directory), "--name", name], check=True, timeout=60)
    return directory / f"{name}.key", directory / f"{name}.key_secret"


def _ready_detail(gw: Gateway, needle: str) -> str:
    """Wait until /ready is 503 with `needle` in its detail; return the detail."""
    deadline = time.monotonic() + REFUSED_WITHIN_S
    body: dict = {}
    while time.monotonic() < deadline:
        reply = httpx.get(gw.url + "/ready", timeout=5)
        body = reply.json()
        assert reply.status_code == 503, body
        if needle in body.get("detail", ""):
            return body["detail"]
        time.sleep(0.2)
    raise AssertionError(f"/ready detail never said {needle!r}: {body}\n{gw.output}")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("curve")
    clients = base / "clients"
    clients.mkdir()
    made = {"engine": _keys(base, "engine")}  # the command line once; the library for the rest
    made |= {name: write_keypair(base, name) for name in ("good", "stranger")}
    shutil.copy(made["good"][0], clients / "good.key")
    return made


@pytest.fixture(scope="module")
def curve_engine(tiny_model: str, keys: dict[str, tuple[Path, Path]]) -> Iterator[Engine]:
    clients = keys["engine"][0].parent / "clients"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    engine = Engine(
        tiny_model,
        endpoint,
        *("--curve-secret-key", str(keys["engine"][1]), "--curve-clients", str(clients)),
    )
    yield engine.wait_ready()
    engine.stop()


def _gateway(engine: Engine, secret: Path | None, server: Path | None) -> Gateway:
    extra: list[str] = []
    if secret is not None:
        extra += ["--curve-secret-key", str(secret)]
    if server is not None:
        extra += ["--curve-server-key", str(server)]
    return Gateway(engine.endpoint, *extra, "--engine-ping-timeout", "2").wait_up()


def test_allowed_gateway_is_served_and_others_are_refused(curve_engine, keys):
    engine_public = keys["engine"][0]
    good = _gateway(curve_engine, keys["good"][1], engine_public)
    plain = _gateway(curve_engine, None, None)
    stranger = _gateway(curve_engine, keys["stranger"][1], engine_public)
    wrong_server = _gateway(curve_engine, keys["good"][1], keys["stranger"][0])
    try:
        good.wait_ready()
        reply = good.openai(timeout=60).chat.completions.create(
            model=_model(good),
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=4,
            temperature=0,
        )
        assert reply.choices[0].finish_reason in ("length", "stop")
        assert reply.usage is not None and reply.usage.completion_tokens >= 1

        assert "requires CurveZMQ" in _ready_detail(plain, "did not accept this gateway")
        assert "key" in _ready_detail(stranger, "did not accept this gateway's key")
        _ready_detail(wrong_server, "did not accept this gateway")
        for refused in (plain, stranger, wrong_server):
            models = httpx.get(refused.url + "/v1/models", timeout=5)
            assert models.status_code != 200 or models.json()["data"] == []

        # the engine stayed up, said whom it refused, and still serves the allowed gateway
        assert curve_engine.popen.poll() is None
        assert "refused a gateway whose public key" in curve_engine.output
        stranger_key = zmq.auth.load_certificate(keys["stranger"][0])[0].decode()
        refusals = _refusals(curve_engine)
        assert len(refusals) == 1 and stranger_key in refusals[0], refusals
        again = good.openai(timeout=60).completions.create(
            model=_model(good), prompt="One two", max_tokens=3, temperature=0
        )
        assert again.usage is not None and again.usage.completion_tokens >= 1

        # allowing the stranger's key while the engine runs lets it in at its next try
        shutil.copy(keys["stranger"][0], keys["engine"][0].parent / "clients" / "stranger.key")
        stranger.wait_ready(timeout=30)
    finally:
        for gw in (good, plain, stranger, wrong_server):
            gw.stop()


def _model(gw: Gateway) -> str:
    return httpx.get(gw.url + "/v1/models", timeout=5).json()["data"][0]["id"]


def _refusals(engine: Engine) -> list[str]:
    return [
        line.strip()
        for line in engine.output.splitlines()
        if "refused a gateway whose public key" in line
    ]
