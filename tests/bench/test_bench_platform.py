"""`infer bench` against the real platform: infer-scheduler + infer-server, tiny Llama."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infer_worker.testing import write_tiny_llama

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def platform() -> Iterator[tuple[str, Path]]:
    """(server URL, tiny model dir) of a running engine and gateway."""
    work = Path(tempfile.mkdtemp(prefix="ebench", dir="/tmp"))  # short: ipc paths are limited
    model = write_tiny_llama(work / "tiny")
    endpoint = f"ipc://{work}/engine.ipc"
    port = _free_port()
    logs = (work / "scheduler.log").open("w"), (work / "server.log").open("w")
    engine = subprocess.Popen(
        [BIN / "infer-scheduler", "--model", str(model), "--endpoint", endpoint],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    gateway = subprocess.Popen(
        [
            BIN / "infer-server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--engine-endpoint",
            endpoint,
        ],
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            for proc in (engine, gateway):
                if proc.poll() is not None:
                    pytest.fail(f"{proc.args[0]} exited: {proc.returncode}; logs in {work}")
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"platform not ready in 180 s; logs in {work}")
            time.sleep(0.3)
        yield url, model
    finally:
        _stop(gateway)
        _stop(engine)
        for log in logs:
            log.close()
        shutil.rmtree(work, ignore_errors=True)


def _bench(flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "infer", "bench", *flags.split()], capture_output=True, text=True, timeout=300
    )


def test_bench_sweep_against_the_platform(platform, tmp_path: Path) -> None:
    url, _ = platform
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    proc = _bench(
        f"--url {url}/v1 --concurrency 1,3 --requests 3 --input-len 16 --output-len 8"
        f" --shared-prefix-len 32 --warmup 1 --json {out} --plot {png}"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["model"] == "tiny" and data["tokenizer"] == f"server {url}/tokenize"
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 3]
    for lv in data["levels"]:
        assert (lv["completed"], lv["failed"]) == (3, 0), lv["errors"]
        # ignore_eos makes the engine generate exactly --output-len tokens
        assert lv["server_completion_tokens"] == 3 * 8
        # re-tokenizing random-weight text need not give the same ids, but about as many
        assert 3 * 4 <= lv["output_tokens"] <= 3 * 16
        # 32 prefix + 16 prompt tokens, plus the chat template's few
        assert 3 * 48 <= lv["server_prompt_tokens"] <= 3 * (48 + 40)
        assert lv["output_tokens_per_s"] > 0 and lv["requests_per_s"] > 0
        assert 0 < lv["ttft_ms"]["p50"] <= lv["e2e_ms"]["p50"] <= lv["e2e_ms"]["p99"]
        assert 0 < lv["itl_ms"]["p50"] <= lv["itl_ms"]["p99"] < lv["e2e_ms"]["p99"]
        assert lv["e2e_ms"]["p99"] < 120_000
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "TTFT p50/p90/p99 ms" in proc.stdout


def test_bench_completions_with_a_tokenizer_file(platform, tmp_path: Path) -> None:
    url, model = platform
    out = tmp_path / "r.json"
    tokenizer = model / "tokenizer.json"
    proc = _bench(
        f"--url {url} --endpoint completions --tokenizer {tokenizer} --concurrency 2"
        f" --requests 2 --input-len 8 --output-len 4 --warmup 0 --json {out}"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    level = data["levels"][0]
    assert data["tokenizer"] == f"tokenizer file {tokenizer}"
    assert (level["completed"], level["server_completion_tokens"]) == (2, 8)
    assert level["output_tokens"] > 0
