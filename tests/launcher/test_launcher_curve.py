"""CurveZMQ on the command lines: `infer keys`, key flags, the plaintext refusal and --insecure."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth
from launcher_util import free_port, script

from infer_protocol.curve import (
    ClientKeys,
    CurveError,
    apply_client,
    apply_server,
    client_keys,
    plaintext_refusal,
    server_keys,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_infer_keys_writes_a_private_secret_and_refuses_to_overwrite(cli, tmp_path):
    target = tmp_path / "keys"
    result = cli("infer", "keys", str(target), "--name", "engine")
    assert result.returncode == 0, result.stderr
    public, secret = target / "engine.key", target / "engine.key_secret"
    assert str(public) in result.stdout and str(secret) in result.stdout
    assert (_mode(target), _mode(public), _mode(secret)) == (0o700, 0o644, 0o600)
    pub, sec = zmq.auth.load_certificate(secret)
    assert sec is not None and zmq.curve_public(sec) == pub
    assert zmq.auth.load_certificate(public) == (pub, None)

    again = cli("infer", "keys", str(target), "--name", "engine")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"infer keys: error: {public} exists (remove it first or choose another --name)"
    ]
    assert zmq.auth.load_certificate(secret) == (pub, sec)  # untouched
    bad = cli("infer", "keys", str(target), "--name", "../x")
    assert bad.returncode == 2 and "--name" in bad.stderr


def _pair(directory: Path, name: str) -> tuple[Path, Path]:
    result = subprocess.run(
        [script("infer"), "keys", str(directory), "--name", name], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return directory / f"{name}.key", directory / f"{name}.key_secret"


def test_written_keys_secure_a_real_zeromq_link(tmp_path):
    """A ROUTER with the engine's keys answers the allowed DEALER, never the other one."""
    engine, allowed, other = (_pair(tmp_path, n) for n in ("engine", "gw", "other"))
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "gw.key").write_bytes(allowed[0].read_bytes())
    keys = server_keys(str(engine[1]), str(clients), {})
    assert keys is not None
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    auth = apply_server(router, keys)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealers = {}
    try:
        for name, pair in (("allowed", allowed), ("other", other)):
            found = client_keys(str(pair[1]), str(engine[0]), {})
            assert isinstance(found, ClientKeys)
            dealer = ctx.socket(zmq.DEALER)
            apply_client(dealer, found)
            dealer.connect(f"tcp://127.0.0.1:{port}")
            dealer.send(name.encode())
            dealers[name] = dealer
        got = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if router.poll(100):
                got.append(router.recv_multipart()[-1])
        assert got == [b"allowed"]
    finally:
        for sock in (*dealers.values(), router):
            sock.close(linger=0)
        auth.stop()
        ctx.term()


@pytest.mark.parametrize(
    ("endpoint", "refused"),
    [
        ("ipc:///tmp/x.ipc", False),
        ("tcp://127.0.0.1:5555", False),
        ("tcp://localhost:5555", False),
        ("tcp://[::1]:5555", False),
        ("tcp://0.0.0.0:5555", True),
        ("tcp://*:5555", True),
        ("tcp://10.0.0.7:5555", True),
        ("tcp://engine-0:5555", True),
        ("tcp://127.0.0.1;10.0.0.7:5555", True),
    ],
)
def test_plaintext_refusal(endpoint, refused):
    flags = "--curve-secret-key and --curve-server-key"
    reason = plaintext_refusal(endpoint, secured=False, insecure=False, flags=flags)
    assert (reason is not None) is refused
    if refused:
        assert endpoint in reason and flags in reason and "--insecure" in reason
    assert plaintext_refusal(endpoint, secured=True, insecure=False, flags=flags) is None
    assert plaintext_refusal(endpoint, secured=False, insecure=True, flags=flags) is None
    many = ["ipc:///tmp/a.ipc", endpoint]
    assert (plaintext_refusal(many, False, False, flags) is not None) is refused


def test_half_given_keys_name_what_is_missing(tmp_path):
    public, secret = _pair(tmp_path, "k")
    with pytest.raises(CurveError, match="--curve-clients"):
        server_keys(str(secret), None, {})
    with pytest.raises(CurveError, match="--curve-secret-key"):
        server_keys(None, str(tmp_path), {})
    with pytest.raises(CurveError, match="--curve-server-key"):
        client_keys(str(secret), None, {})
    with pytest.raises(CurveError, match="holds no secret key"):
        client_keys(str(public), str(public), {})
    with pytest.raises(CurveError, match="CURVE_SERVER_KEY is not a Z85"):
        client_keys(str(secret), None, {"CURVE_SERVER_KEY": "short"})
    pub, sec = zmq.auth.load_certificate(secret)
    env = {"CURVE_SECRET_KEY": sec.decode(), "CURVE_SERVER_KEY": pub.decode()}
    assert client_keys(None, None, env) == ClientKeys(pub, sec, pub)
    engine = server_keys(
        None, None, {"CURVE_SECRET_KEY": sec.decode(), "CURVE_CLIENT_KEYS": pub.decode()}
    )
    assert engine is not None and engine.allowed() == {pub}


def _exits(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env
    )


def test_engine_refuses_a_plaintext_public_endpoint_before_loading(tmp_path):
    endpoint = f"tcp://0.0.0.0:{free_port()}"
    missing = str(tmp_path / "no-model.gguf")
    refused = _exits([script("infer-scheduler"), "--model", missing, "--endpoint", endpoint])
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert endpoint in last and "--curve-secret-key and --curve-clients" in last
    assert "--insecure" in last
    # --insecure gets past the check: the engine goes on to load (and fail on) the model
    allowed = _exits(
        [script("infer-scheduler"), "--model", missing, "--endpoint", endpoint, "--insecure"]
    )
    assert allowed.returncode == 1 and "could not load model" in allowed.stderr


def test_gateway_refuses_a_plaintext_remote_engine_unless_insecure():
    endpoint = "tcp://192.0.2.10:5555"
    argv = [script("infer-server"), "--port", str(free_port()), "--engine-endpoint", endpoint]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURVE_")}
    refused = _exits(argv, env)
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert endpoint in last and "--curve-secret-key and --curve-server-key" in last
    proc = subprocess.Popen(
        [*argv, "--insecure"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any("infer-server listening" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)  # it exited without listening
            lines.append(line)
    finally:
        proc.terminate()
        proc.wait(15)
