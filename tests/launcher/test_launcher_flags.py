"""One set of flags: `infer serve`, `infer-server` and `infer-scheduler` agree on what they share."""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import pytest
from launcher_util import free_port, script

from infer import serve_options
from infer_protocol import defaults
from infer_scheduler.cli import build_parser as scheduler_parser
from infer_server.config import build_parser as server_parser
from infer_server.config import parse_settings


def serve_parser(env: dict[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infer serve")
    serve_options.add_arguments(parser, env)
    return parser


def action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def test_shared_flags_have_one_default():
    server = parse_settings([], {})
    engine = scheduler_parser({}).parse_args([])
    serve = serve_parser({}).parse_args([])
    assert server.host == serve.host == defaults.DEFAULT_HOST == "127.0.0.1"
    assert server.port == serve.port == defaults.DEFAULT_PORT
    assert server.shutdown_timeout == serve.shutdown_timeout == defaults.SHUTDOWN_TIMEOUT_S
    assert server.engine_endpoint == engine.endpoint == defaults.DEFAULT_ENDPOINT
    assert server.log_level == engine.log_level == "info" and serve.log_level is None
    assert server.cors_origins == ("*",) and serve.cors_origins is None  # the gateway's default


def test_shared_flags_accept_the_same_values():
    parsers = {
        "infer-server": server_parser({}),
        "infer-scheduler": scheduler_parser({}),
        "infer serve": serve_parser({}),
    }
    levels = {name: tuple(action(p, "--log-level").choices) for name, p in parsers.items()}
    assert set(levels.values()) == {defaults.LOG_LEVELS}, levels
    for name, parser in parsers.items():
        assert parser.parse_args(["--log-level", "WARN"]).log_level == "warn", name
    gateways = (parsers["infer-server"], parsers["infer serve"])
    assert {action(p, "--cors-origins").nargs for p in gateways} == {"+"}
    for parser in gateways:
        assert parser.parse_args(["--port", "65535"]).port in (65535, "65535")
        for bad in ("0", "65536", "http"):
            with pytest.raises(SystemExit):
                parser.parse_args(["--port", bad])
    assert (
        defaults.log_level_name("trace") == "DEBUG" and defaults.log_level_name("Warn") == "WARNING"
    )


def test_either_endpoint_variable_configures_both_ends():
    for name in ("ENGINE_ENDPOINT", "ZMQ_ENDPOINT"):
        env = {name: "tcp://127.0.0.1:5999"}
        assert parse_settings([], env).engine_endpoint == "tcp://127.0.0.1:5999"
        assert scheduler_parser(env).parse_args([]).endpoint == "tcp://127.0.0.1:5999"
    both = {"ENGINE_ENDPOINT": "tcp://gateway-side:1", "ZMQ_ENDPOINT": "tcp://engine-side:2"}
    assert parse_settings(["--insecure"], both).engine_endpoint == "tcp://gateway-side:1"
    assert scheduler_parser(both).parse_args([]).endpoint == "tcp://engine-side:2"
    seed = {"HOST": "0.0.0.0", "PORT": "9100", "LOG_LEVEL": "WARN", "SHUTDOWN_TIMEOUT": "4"}
    s = parse_settings([], seed)
    assert (s.host, s.port, s.log_level, s.shutdown_timeout) == ("0.0.0.0", 9100, "warning", 4.0)


@pytest.mark.parametrize("command", ["infer-server", "infer-scheduler"])
def test_a_bad_log_level_variable_is_one_line_and_exit_2(command):
    env = {**os.environ, "LOG_LEVEL": "loud"}
    result = subprocess.run([script(command)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "LOG_LEVEL must be one of" in result.stderr and "'loud'" in result.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host, loopback):
    assert defaults.is_loopback(host) is loopback
    assert (defaults.exposure_warning(host, None) is None) is loopback
    assert defaults.exposure_warning(host, "key") is None


def _gateway_log_until_listening(*args: str, env: dict[str, str]) -> str:
    """Start infer-server (no engine needed), return its log up to the listening line."""
    proc = subprocess.Popen(
        [script("infer-server"), "--port", str(free_port()), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "infer-server listening" in line:
                break
    finally:
        proc.terminate()
        proc.wait(15)
    assert any("infer-server listening" in line for line in lines), "".join(lines)
    return "".join(lines)


def test_binding_every_interface_without_a_key_warns_at_start():
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "HOST")}
    exposed = _gateway_log_until_listening("--host", "0.0.0.0", env=env)
    assert "WARNING" in exposed and "without an API key" in exposed
    keyed = _gateway_log_until_listening("--host", "0.0.0.0", env={**env, "API_KEY": "k"})
    assert "without an API key" not in keyed
