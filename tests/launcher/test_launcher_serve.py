"""`infer serve` end to end, started as a user would, on the default model.

The tests of this module share one launcher and run in file order: ready
and answering, then the clients, then an engine crash, then SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from launcher_util import REPO, free_port, script
from openai import OpenAI

from infer.serve import engine_env

STARTUP_LIMIT_S = 60.0
RECOVERY_LIMIT_S = 30.0
STOP_LIMIT_S = 10.0


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    started: float
    out: Path
    err: Path
    seen_pids: set[int] = field(default_factory=set)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines of the launcher's and the engine's output (gateway access logs skipped)."""
        kept = [
            line
            for line in self.err.read_text(errors="replace").splitlines()
            if "infer_server.access" not in line
        ]
        return "\n".join(kept[-lines:])

    def children(self) -> list[psutil.Process]:
        kids = psutil.Process(self.proc.pid).children(recursive=True)
        self.seen_pids.update(k.pid for k in kids)
        return kids

    def engine(self) -> psutil.Process:
        for kid in self.children():
            if any(
                "infer-scheduler" in part or "infer_scheduler" in part for part in kid.cmdline()
            ):
                return kid
        raise AssertionError(f"no engine child; log:\n{self.stderr_tail()}")


def _wait_for_banner(served: Served, limit: float) -> None:
    while True:
        if "infer is ready" in served.stdout():
            return
        if served.proc.poll() is not None or time.monotonic() - served.started > limit:
            break
        time.sleep(0.2)
    raise AssertionError(
        f"infer serve not ready after {time.monotonic() - served.started:.0f} s "
        f"(exit {served.proc.poll()}); log:\n{served.stderr_tail()}"
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port = free_port()
    logs = tmp_path_factory.mktemp("serve")
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    with out.open("wb") as out_file, err.open("wb") as err_file:
        proc = subprocess.Popen(
            [script("infer"), "serve", "--port", str(port)],
            stdout=out_file,
            stderr=err_file,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", time.monotonic(), out, err)
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pid in served.seen_pids:  # never leave a child behind, even on failure
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def _chat(url: str, content: str = "Say hello.") -> str:
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": content}],
        max_tokens=8,
        temperature=0,
    )
    return reply.choices[0].message.content or ""


def test_answers_a_chat_completion_within_60_s_of_start(served: Served):
    _wait_for_banner(served, STARTUP_LIMIT_S)
    text = _chat(served.url)
    elapsed = time.monotonic() - served.started
    assert text.strip()
    assert elapsed < STARTUP_LIMIT_S, f"first answer after {elapsed:.1f} s"
    banner = served.stdout()
    assert f"infer is ready: {served.url}" in banner
    assert f"curl {served.url}/v1/chat/completions" in banner


def test_engine_openmp_threads_spin_briefly_then_sleep(served: Served):
    """The engine runs with PASSIVE + a short spin (unless the user set either): sleeping
    at once costs ~50 us a parallel region, spinning forever starves the gateway."""
    _wait_for_banner(served, STARTUP_LIMIT_S)
    env = served.engine().environ()
    assert env["OMP_WAIT_POLICY"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    assert env["GOMP_SPINCOUNT"] == os.environ.get("GOMP_SPINCOUNT", "10000")
    assert engine_env({"GOMP_SPINCOUNT": "0"})["GOMP_SPINCOUNT"] == "0"  # the user's wins


def test_children_run_on_a_private_ipc_socket(served: Served):
    _wait_for_banner(served, STARTUP_LIMIT_S)
    cmdline = served.engine().cmdline()
    endpoint = cmdline[cmdline.index("--endpoint") + 1]
    assert endpoint.startswith("ipc://")
    socket_file = Path(endpoint.removeprefix("ipc://"))
    assert socket_file.exists()
    assert (socket_file.parent.stat().st_mode & 0o777) == 0o700


def test_chat_client_streams_keeps_the_conversation_and_resets(served: Served):
    _wait_for_banner(served, STARTUP_LIMIT_S)
    result = subprocess.run(
        [script("infer"), "chat", "--url", served.url, "--max-tokens", "5", "--temperature", "0"],
        input="Hello!\nAnd again?\n/reset\n/quit\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "chatting with smollm2" in result.stdout
    answers = result.stdout.split("assistant> ")[1:]
    assert len(answers) == 2 and all(a.strip() for a in answers), result.stdout
    assert "(conversation cleared)" in result.stdout
    assert "error" not in result.stderr


def test_chat_session_keeps_turns(served: Served):
    import argparse
    import io

    from infer.chat import ChatSession

    _wait_for_banner(served, STARTUP_LIMIT_S)
    args = argparse.Namespace(system="Be brief.", temperature=0.0, max_tokens=4)
    with httpx.Client(base_url=served.url, timeout=60) as client:
        session = ChatSession(client, "smollm2", args)
        first = session.ask("Hi", io.StringIO())
        session.ask("Again", io.StringIO())
        assert [m["role"] for m in session.messages] == [
            "system", "user", "assistant", "user", "assistant",
        ]  # fmt: skip
        assert session.messages[2]["content"] == first
        session.reset()
        assert session.messages == [{"role": "system", "content": "Be brief."}]


def test_container_health_checks_pass_against_the_real_processes(served: Served):
    _wait_for_banner(served, STARTUP_LIMIT_S)
    cmdline = served.engine().cmdline()
    endpoint = cmdline[cmdline.index("--endpoint") + 1]
    ready = subprocess.run(
        [sys.executable, str(REPO / "docker" / "ready_check.py"), f"{served.url}/ready"],
        capture_output=True,
        timeout=30,
    )
    assert ready.returncode == 0, ready.stderr
    ping = subprocess.run(
        [sys.executable, str(REPO / "docker" / "ping_engine.py"), endpoint, "10"],
        capture_output=True,
        timeout=30,
    )
    assert ping.returncode == 0, ping.stderr
    down = subprocess.run(
        [
            sys.executable,
            str(REPO / "docker" / "ready_check.py"),
            f"http://127.0.0.1:{free_port()}/ready",
        ],
        capture_output=True,
        timeout=30,
    )
    assert down.returncode == 1


def _curl_body(text: str) -> dict:
    """The JSON body of the first `curl ... -d '{...}'` in `text`."""
    match = re.search(r"curl \S+/v1/chat/completions.*?-d '(\{.*?\})'", text, flags=re.S)
    assert match, "no curl example with a -d body"
    return json.loads(match.group(1))


def test_readme_and_banner_examples_work(served: Served):
    _wait_for_banner(served, STARTUP_LIMIT_S)
    readme = (REPO / "README.md").read_text()
    for source in (readme, served.stdout()):
        body = {**_curl_body(source), "max_tokens": 8}
        reply = httpx.post(f"{served.url}/v1/chat/completions", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
    snippet = re.search(r"```python\n(.*?)```", readme, flags=re.S)
    assert snippet, "README has no Python example"
    code = textwrap.dedent(snippet.group(1))
    code = code.replace("http://127.0.0.1:8000", served.url).replace(
        "max_tokens=100", "max_tokens=8"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_infer_bench_is_dispatched_by_the_infer_command(served: Served, tmp_path: Path):
    _wait_for_banner(served, STARTUP_LIMIT_S)
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [script("infer"), "bench", "--url", served.url, "--concurrency", "1", "--requests", "2",
         "--input-len", "16", "--output-len", "4", "--warmup", "0", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file() and json.loads(out.read_text())


def test_engine_killed_is_restarted_while_the_gateway_answers(served: Served):
    _wait_for_banner(served, STARTUP_LIMIT_S)
    engine = served.engine()
    engine.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    ready_codes: set[int] = set()
    recovered_after = None
    with httpx.Client(base_url=served.url, timeout=5) as client:
        while time.monotonic() - killed_at < RECOVERY_LIMIT_S:
            assert client.get("/health").status_code == 200
            ready_codes.add(client.get("/ready").status_code)
            try:
                if _chat(served.url).strip():
                    recovered_after = time.monotonic() - killed_at
                    break
            except Exception:
                time.sleep(0.5)
    assert recovered_after is not None, (
        f"no answer {RECOVERY_LIMIT_S:.0f} s after the engine was killed:\n{served.stderr_tail()}"
    )
    assert 503 in ready_codes
    assert served.engine().pid != engine.pid
    assert served.proc.poll() is None
    deadline = time.monotonic() + 5
    while "the engine is ready again" not in served.err.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = served.err.read_text()
    assert "restarted the engine" in log
    assert log.index("engine ready", log.index("restarted the engine")) < log.index(
        "the engine is ready again"
    )
    assert "GET /ready" not in log, "the launcher's own readiness probes should not be echoed"


def test_sigterm_stops_everything_within_10_s(served: Served):
    _wait_for_banner(served, STARTUP_LIMIT_S)
    cmdline = served.engine().cmdline()
    socket_file = Path(cmdline[cmdline.index("--endpoint") + 1].removeprefix("ipc://"))
    pids = [p.pid for p in served.children()]
    assert len(pids) >= 2 and socket_file.exists()
    served.proc.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    code = served.proc.wait(STOP_LIMIT_S + 5)
    deadline = stopped_at + STOP_LIMIT_S
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert time.monotonic() - stopped_at < STOP_LIMIT_S
    assert code == 0
    assert not [pid for pid in pids if _alive(pid)]
    assert not socket_file.exists()
    assert not socket_file.parent.exists()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_model_that_cannot_load_ends_with_one_line(tmp_path: Path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a gguf file" * 100)
    result = subprocess.run(
        [script("infer"), "serve", "--port", str(free_port()), "--model", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("infer serve:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        "infer serve: error: the engine exited during startup (exit code 1)"
    )
    reason = errors[0].split("): ", 1)[1]
    assert "broken.gguf" in reason
    assert not reason[0].isdigit(), "the child's log timestamp should be stripped"


def _start_and_wait_for_children(tmp_path: Path) -> tuple[subprocess.Popen[bytes], list[int], Path]:
    """A launcher whose two children are running (the model may still be loading)."""
    log = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen(
        [script("infer"), "serve", "--port", str(free_port())],
        stdout=subprocess.DEVNULL,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kids = psutil.Process(proc.pid).children()
        cmdlines = [" ".join(k.cmdline()) for k in kids]
        endpoints = [c.split("--endpoint ")[1].split()[0] for c in cmdlines if "--endpoint " in c]
        if len(kids) == 2 and endpoints:
            return proc, [k.pid for k in kids], Path(endpoints[0].removeprefix("ipc://")).parent
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the launcher did not start two children")


def test_ctrl_c_during_loading_stops_everything(tmp_path: Path):
    proc, pids, workdir = _start_and_wait_for_children(tmp_path)
    assert workdir.is_dir()
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    assert proc.wait(STOP_LIMIT_S) == 0
    while time.monotonic() - started < STOP_LIMIT_S and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]
    assert not workdir.exists()


def test_children_die_with_a_killed_launcher(tmp_path: Path):
    proc, pids, workdir = _start_and_wait_for_children(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    started = time.monotonic()
    while time.monotonic() - started < STOP_LIMIT_S and any(_alive(p) for p in pids):
        time.sleep(0.1)
    leftover = [p for p in pids if _alive(p)]
    for pid in leftover:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    shutil.rmtree(workdir, ignore_errors=True)  # nobody was left to remove it
    assert not leftover, "children outlived a SIGKILLed launcher"


def test_options_reach_both_children(tmp_path: Path):
    """--api-key (gateway), --served-model-name and --max-running (engine) take effect."""
    port = free_port()
    out = tmp_path / "stdout.txt"
    with out.open("wb") as out_file, (tmp_path / "stderr.txt").open("wb") as err_file:
        proc = subprocess.Popen(
            [script("infer"), "serve", "--port", str(port), "--api-key", "s3cret",
             "--served-model-name", "alias", "--max-running", "4", "--kv-cache-tokens", "4096"],
            stdout=out_file,
            stderr=err_file,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    served = Served(
        proc, f"http://127.0.0.1:{port}", time.monotonic(), out, tmp_path / "stderr.txt"
    )
    try:
        _wait_for_banner(served, STARTUP_LIMIT_S)
        assert "Authorization: Bearer s3cret" in served.stdout()
        children = served.children()
        assert len(children) >= 2
        for child in children:  # what `ps` shows every local user
            cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes()
            assert b"s3cret" not in cmdline, cmdline
        engine_cmd = served.engine().cmdline()
        assert engine_cmd[engine_cmd.index("--max-running") + 1] == "4"
        body = {"model": "alias", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        with httpx.Client(base_url=served.url, timeout=60) as client:
            assert client.post("/v1/chat/completions", json=body).status_code == 401
            assert client.get("/ready").status_code == 200
            ok = client.post(
                "/v1/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"}
            )
            assert ok.status_code == 200, ok.text
            assert ok.json()["model"] == "alias"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_LIMIT_S + 5) == 0
