"""The `infer` command line: help always works, bad input gets one line and a non-zero exit."""

from __future__ import annotations

import argparse
import socket
import time

import pytest
from launcher_util import run_cli

from infer import serve_options
from infer.cli import build_parser


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("serve", "--help"),
        ("chat", "--help"),
        ("bench", "--help"),
    ],
)
def test_help_exits_zero(cli, argv):
    result = cli("infer", *argv)
    assert result.returncode == 0, result.stderr
    assert "usage: infer" in result.stdout


def test_serve_help_lists_the_options_of_both_processes(cli):
    out = cli("infer", "serve", "--help").stdout
    for flag in ("--model", "--host", "--port", "--device", "--dtype", "--api-key"):
        assert flag in out
    for target in (serve_options.ENGINE, serve_options.GATEWAY):
        for flag in serve_options.flags_of(target):
            if flag not in ("--endpoint", "--engine-endpoint"):
                assert flag in out, flag


def test_version(cli):
    result = cli("infer", "--version")
    assert result.returncode == 0
    assert result.stdout.startswith("infer ")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ((), "choose a command"),
        (("serve", "--port", "abc"), "--port"),
        (("serve", "--port", "0"), "--port"),
        (("serve", "--port", "70000"), "--port"),
        (("serve", "--dtype", "int3"), "--dtype"),
        (("serve", "--device", "tpu"), "--device"),
        (("serve", "--max-running", "0"), "--max-running"),
        (("serve", "--gpu-memory-utilization", "1.5"), "--gpu-memory-utilization"),
        (("serve", "--no-such-flag"), "--no-such-flag"),
        (("nonsense",), "nonsense"),
        (("chat", "--temperature", "hot"), "--temperature"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(cli, argv, needle):
    result = cli("infer", *argv)
    assert result.returncode == 2
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0] and needle in lines[0]


def test_port_in_use_is_one_line_and_fails_fast(cli, port):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        started = time.monotonic()
        result = cli("infer", "serve", "--port", str(port))
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    lines = _lines(result.stderr)
    assert lines == [f"infer serve: error: port {port} on 127.0.0.1 is already in use"]


def test_missing_model_path_is_one_line(cli, port, tmp_path):
    missing = tmp_path / "nope" / "model.gguf"
    result = cli("infer", "serve", "--port", str(port), "--model", str(missing))
    assert result.returncode == 1
    lines = _lines(result.stderr)
    assert len(lines) == 1 and "model not found" in lines[0] and str(missing) in lines[0]


def test_missing_chat_template_is_one_line(cli, port, tmp_path):
    result = cli(
        "infer", "serve", "--port", str(port), "--chat-template", str(tmp_path / "none.jinja")
    )
    assert result.returncode == 1
    assert _lines(result.stderr) == [
        f"infer serve: error: chat template file not found: {tmp_path / 'none.jinja'}"
    ]


def test_chat_without_a_server_is_one_line(cli, port):
    result = cli("infer", "chat", "--url", f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    lines = _lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("infer chat: error: cannot reach the server")


def test_options_map_to_the_child_flags():
    parser, _, _ = build_parser(with_bench=False)
    args = parser.parse_args(
        [
            "serve",
            "--model",
            "/m/x.gguf",
            "--port",
            "9001",
            "--device",
            "cpu",
            "--enforce-eager",
            "--no-prefix-cache",
            "--served-model-name",
            "a",
            "--served-model-name",
            "b",
            "--cors-origins",
            "http://x",
            "http://y",
            "--api-key",
            "k",
            "--log-level",
            "debug",
        ]
    )
    engine = serve_options.engine_args(args, "ipc:///t/e.ipc")
    gateway = serve_options.gateway_args(args, "ipc:///t/e.ipc")
    assert "k" not in engine + gateway  # the key goes in the gateway's environment
    assert engine == [
        "--model", "/m/x.gguf", "--endpoint", "ipc:///t/e.ipc", "--device", "cpu",
        "--enforce-eager", "--no-prefix-cache", "--served-model-name", "a", "--served-model-name", "b",
        "--log-level", "debug",
    ]  # fmt: skip
    assert gateway == [
        "--host", "127.0.0.1", "--port", "9001", "--engine-endpoint", "ipc:///t/e.ipc",
        "--cors-origins", "http://x", "http://y", "--shutdown-timeout", "30.0",
        "--log-level", "debug",
    ]  # fmt: skip


@pytest.mark.parametrize(("given", "passed"), [("all", "all"), ("0", "0"), ("16", "16")])
def test_int8_max_batch_takes_a_count_or_all(given, passed):
    parser, _, _ = build_parser(with_bench=False)
    args = parser.parse_args(["serve", "--int8-max-batch", given])
    assert serve_options.engine_args(args, "E")[-2:] == ["--int8-max-batch", passed]


def test_int8_max_batch_rejects_other_words(cli):
    result = cli("infer", "serve", "--int8-max-batch", "some")
    assert result.returncode == 2 and "--int8-max-batch" in result.stderr


def test_unset_options_are_not_passed():
    parser, _, _ = build_parser(with_bench=False)
    args = parser.parse_args(["serve"])
    assert isinstance(args, argparse.Namespace)
    assert serve_options.engine_args(args, "E") == ["--model", "smollm2", "--endpoint", "E"]


@pytest.mark.parametrize(
    ("target", "command"),
    [(serve_options.ENGINE, "infer-scheduler"), (serve_options.GATEWAY, "infer-server")],
)
def test_every_forwarded_flag_exists_in_the_child(target, command):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    for flag in serve_options.flags_of(target):
        assert flag in result.stdout, f"{command} has no {flag}"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("::", "http://[::1]:8000"),
        ("::1", "http://[::1]:8000"),
        ("localhost", "http://localhost:8000"),
    ],
)
def test_printed_url_is_reachable_from_this_machine(host, url):
    from infer.network import base_url

    assert base_url(host, 8000) == url


def test_exit_descriptions():
    from infer.serve import banner, describe_exit

    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-9) == "killed by SIGKILL"
    text = banner("http://127.0.0.1:8000", "smollm2", "k3y")
    assert "Authorization: Bearer k3y" in text and '"model": "smollm2"' in text


def test_a_bad_host_is_one_line(cli, port):
    result = cli("infer", "serve", "--host", "no-such-host.invalid", "--port", str(port))
    assert result.returncode == 1
    lines = _lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("infer serve: error: cannot resolve host")
