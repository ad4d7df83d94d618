"""`infer bench` end to end against real HTTP test servers (bench_sse_app.py)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infer.bench.__main__ import main
from infer.bench.tokens import CHUNKS


def bench(flags: str, *extra: str) -> int:
    """Run `infer bench` in this process with whitespace-separated `flags` plus `extra`."""
    return main([*flags.split(), *extra])


def test_sweep_writes_table_json_and_plot(fresh_url: str, tmp_path: Path) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    flags = (
        f"--url {fresh_url}/v1/ --concurrency 1,4 --requests 8 --output-len 5 --input-len 20"
        f" --warmup 2 --shared-prefix-len 16 --json {out} --plot {png}"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "infer.bench", *flags.split()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "concurrency 4 [########################] 8/8 failed 0" in proc.stderr
    assert "counted with: server " in proc.stdout
    data = json.loads(out.read_text())
    assert data["model"] == "test-model" and data["url"] == fresh_url
    assert data["tokenizer"] == f"server {fresh_url}/tokenize"
    assert "api_key" not in data["config"]
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 4]
    for lv in data["levels"]:
        assert (lv["completed"], lv["failed"], lv["errors"]) == (8, 0, {})
        assert lv["output_tokens"] == lv["server_completion_tokens"] == 40
        assert lv["output_tokens_per_s"] == pytest.approx(40 / lv["duration_s"], rel=0.01)
        assert 18 <= lv["ttft_ms"]["p50"] <= lv["e2e_ms"]["p50"]  # 20 ms before each chunk
        assert 15 <= lv["itl_ms"]["p50"] < 500
        assert lv["e2e_ms"]["p99"] >= 5 * 18
    # four requests in flight at once finish several times faster (about 4x; loose for busy CI)
    assert data["levels"][1]["requests_per_s"] > 1.5 * data["levels"][0]["requests_per_s"]
    assert png.read_bytes()[:4] == b"\x89PNG"

    stats = httpx.get(fresh_url + "/stats").json()
    assert stats["max_inflight"] == 4
    bodies = stats["bodies"]
    assert len(bodies) == 2 + 8 + 8
    systems = {b["messages"][0]["content"] for b in bodies}
    assert len(systems) == 1 and 14 <= len(systems.pop().split()) <= 18
    users = [b["messages"][1]["content"] for b in bodies]
    assert len(set(users)) == len(users) and all(19 <= len(u.split()) <= 21 for u in users)
    assert all(b["ignore_eos"] is True and b["max_tokens"] == 5 for b in bodies)
    assert all(b["temperature"] == 0 and b["stream"] is True for b in bodies)


def test_chunk_fallback_api_key_and_completions(plain_url: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    flags = "--api-key sekrit --endpoint completions --concurrency 2 --requests 4"
    rc = bench(f"--url {plain_url} {flags} --output-len 3 --warmup 0 --json {out}")
    assert rc == 0
    assert "no tokenizer; counting stream chunks" in capsys.readouterr().err
    level = json.loads(out.read_text())["levels"][0]
    assert level["token_count_source"] == CHUNKS and level["output_tokens"] == 12


def test_every_request_failing_exits_1(plain_url: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    flags = "--model test-model --api-key wrong --concurrency 1,2 --requests 2 --warmup 1"
    assert bench(f"--url {plain_url} {flags} --json {out}") == 1
    assert "concurrency 2: 2 failed: HTTP 401: bad api key" in capsys.readouterr().out
    levels = json.loads(out.read_text())["levels"]
    assert [lv["failed"] for lv in levels] == [2, 2]


def test_tokenizer_file_wins_over_server(sse_url: str, tokenizer_json: Path, tmp_path: Path):
    out = tmp_path / "r.json"
    flags = "--concurrency 3 --requests 3 --output-len 4 --warmup 0"
    assert bench(f"--url {sse_url} {flags} --json {out}", "--tokenizer", str(tokenizer_json)) == 0
    data = json.loads(out.read_text())
    assert data["tokenizer"] == f"tokenizer file {tokenizer_json}"
    assert data["levels"][0]["output_tokens"] == 12  # the BOS of the post-processor is not counted


def test_failed_requests_are_counted_not_fatal(sse_url: str, tmp_path: Path) -> None:
    data_path, out = tmp_path / "d.jsonl", tmp_path / "r.json"
    lines = [
        {"prompt": "fine"},
        {"prompt": "FAIL400"},
        {"prompt": "FAILMID now"},
        {"messages": [{"role": "user", "content": "CUT"}]},
        {"prompt": "also fine"},
    ]
    data_path.write_text("\n".join(json.dumps(line) for line in lines))
    flags = "--concurrency 2 --requests 10 --output-len 4 --warmup 0"
    assert bench(f"--url {sse_url} --dataset {data_path} {flags} --json {out}") == 0
    level = json.loads(out.read_text())["levels"][0]
    assert (level["completed"], level["failed"]) == (4, 6)
    assert level["errors"] == {
        "HTTP 400: prompt asked for a failure": 2,
        "stream error: engine exploded": 2,
        "stream ended without finish_reason or [DONE]": 2,
    }
    assert level["output_tokens"] == 16


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("--url ftp://x", "--url must be an http(s) URL"),
        ("--url http://127.0.0.1:{port}", "cannot list models at http://127.0.0.1:"),
        ("--url {plain}", "/v1/models: HTTP 401: bad api key"),
        ("--dataset {tmp}/missing.jsonl", "cannot read dataset"),
        ("--dataset {tmp}/bad.jsonl", "bad.jsonl:1: "),
        ("--tokenizer {tmp}/missing.json", "cannot load tokenizer"),
        ("--dataset {tmp}/chat.jsonl --endpoint completions", 'needs "prompt"'),
        ("--json {tmp}/no/such/dir/r.json", "its directory does not exist"),
    ],
)
def test_bad_input_is_a_clear_error(
    sse_url: str, plain_url: str, tmp_path: Path, capsys, extra: str, message: str
) -> None:
    (tmp_path / "bad.jsonl").write_text("{nope\n")
    (tmp_path / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "x"}]}\n')
    extra = extra.format(port=_closed_port(), tmp=tmp_path, plain=plain_url)
    assert bench(f"--url {sse_url} --concurrency 1 --requests 1 {extra}") == 2
    err = capsys.readouterr().err
    assert err.startswith("infer bench: error: ") and message in err


@pytest.mark.parametrize(
    "flags",
    [
        "--concurrency 0,4",
        "--concurrency x",
        "--requests 0",
        "--shared-prefix-len -1",
        "--temperature -0.5",
        "--timeout 0",
    ],
)
def test_bad_flags_exit_2(flags: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        bench(flags)
    assert info.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_ctrl_c_reports_the_levels_that_finished(fresh_url: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    flags = f"--url {fresh_url} --concurrency 2,1 --requests 2 --output-len 50 --warmup 0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "infer.bench", *flags.split(), "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:  # a line per finished request (stderr is not a TTY)
            if line.startswith("concurrency 2 ") and " 2/2 " in line:
                break
        time.sleep(0.3)  # level 2 is counted; level 1 runs for about 2 s
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "infer bench: interrupted" in stderr and "Traceback" not in stderr
    assert "2/2" in stdout
    levels = json.loads(out.read_text())["levels"]
    assert [(lv["concurrency"], lv["completed"]) for lv in levels] == [(2, 2)]
