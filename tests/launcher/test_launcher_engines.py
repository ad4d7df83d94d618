"""`infer serve --engines N`: the layout of the engines, then two real engines behind one gateway.

The end-to-end test starts the launcher on a tiny random-weight model:
both engines serve, one killed engine is restarted alone while the other
and the gateway keep serving, and SIGTERM stops everything.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
from launcher_util import free_port, script
from openai import OpenAI

from infer import serve_options
from infer.cli import build_parser
from infer.engines import plan_engines, visible_gpus

STARTUP_LIMIT_S = 90.0


def test_one_engine_keeps_the_single_engine_layout(tmp_path):
    (slot,) = plan_engines(1, tmp_path, None, None, ["0", "1"], 8)
    assert (slot.name, slot.endpoint, slot.threads, slot.env) == (
        "engine",
        f"ipc://{tmp_path}/engine.ipc",
        None,
        {},
    )


@pytest.mark.parametrize(
    ("count", "cpus", "threads", "each"),
    [(2, 2, None, 1), (3, 2, None, 1), (2, 8, None, 4), (3, 8, None, 2), (2, 8, 3, 3)],
)
def test_cpu_threads_are_split_at_least_one_each(tmp_path, count, cpus, threads, each):
    slots = plan_engines(count, tmp_path, "cpu", threads, ["0", "1"], cpus)
    assert [s.name for s in slots] == [f"engine-{i}" for i in range(count)]
    assert len({s.socket for s in slots}) == count
    assert all(s.socket.parent == tmp_path for s in slots)
    assert [s.threads for s in slots] == [each] * count
    assert all(s.env == {} for s in slots)  # --device cpu: GPUs are not handed out


def test_each_engine_gets_a_gpu_of_its_own(tmp_path):
    slots = plan_engines(2, tmp_path, "auto", None, ["3", "5"], 16)
    assert [s.env for s in slots] == [{"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": "5"}]
    assert [s.threads for s in slots] == [None, None]
    with pytest.raises(ValueError, match="one GPU per engine, 2 visible"):
        plan_engines(3, tmp_path, "cuda", None, ["0", "1"], 16)
    with pytest.raises(ValueError, match="not cuda:1"):
        plan_engines(2, tmp_path, "cuda:1", None, ["0", "1"], 16)
    with pytest.raises(ValueError, match="no GPU is visible"):
        plan_engines(2, tmp_path, "cuda", None, [], 16)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 7"}) == ["2", "7"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_the_gateway_is_given_every_engine():
    parser, _, _ = build_parser(with_bench=False)
    args = parser.parse_args(["serve", "--engines", "2"])
    argv = serve_options.gateway_args(args, ["ipc:///t/engine-0.ipc", "ipc:///t/engine-1.ipc"])
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--engine-endpoint"]
    assert pairs == ["ipc:///t/engine-0.ipc", "ipc:///t/engine-1.ipc"]
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--engines", bad])


def _engines(launcher: psutil.Process) -> dict[str, psutil.Process]:
    found = {}
    for kid in launcher.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmd = kid.cmdline()
            if "--endpoint" in cmd and any("infer-scheduler" in part for part in cmd):
                found[Path(cmd[cmd.index("--endpoint") + 1]).stem] = kid
    return found


def _chat(url: str, model: str) -> str:
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    assert reply.usage is not None and reply.usage.completion_tokens >= 1
    return reply.model


def _wait_for(text: str, log: Path, proc: subprocess.Popen, limit: float) -> None:
    deadline = time.monotonic() + limit
    while text not in log.read_text(errors="replace"):
        tail = log.read_text(errors="replace")[-3000:]
        assert proc.poll() is None, tail
        assert time.monotonic() < deadline, f"no {text!r} within {limit:g} s:\n{tail}"
        time.sleep(0.2)


def test_two_engines_serve_and_one_is_restarted_alone(tmp_path: Path):
    from infer_worker.testing import write_tiny_llama

    model = write_tiny_llama(tmp_path / "tiny")
    port = free_port()
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as out_file, err.open("wb") as err_file:
        proc = subprocess.Popen(
            [script("infer"), "serve", "--engines", "2", "--model", str(model), "--port",
             str(port), "--device", "cpu", "--dtype", "float32", "--shutdown-timeout", "5"],
            stdout=out_file, stderr=err_file, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    launcher = psutil.Process(proc.pid)
    seen: set[int] = set()
    try:
        _wait_for("infer is ready", out, proc, STARTUP_LIMIT_S)
        engines = _engines(launcher)
        seen |= {p.pid for p in launcher.children(recursive=True)}
        assert sorted(engines) == ["engine-0", "engine-1"]
        for engine in engines.values():  # two CPUs here: one thread each, at least one
            cmd = engine.cmdline()
            assert int(cmd[cmd.index("--threads") + 1]) >= 1
        name = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        assert _chat(url, name) == name
        listed = httpx.get(f"{url}/v1/metrics", timeout=10).json()["engines"]
        assert len(listed) == 2 and {e["state"] for e in listed} == {"ready"}

        survivor = engines["engine-0"].pid
        engines["engine-1"].kill()
        _wait_for("restarted the engine-1", err, proc, 30)
        assert _chat(url, name) == name  # the other engine serves meanwhile
        _wait_for("the engine-1 is ready again", err, proc, STARTUP_LIMIT_S)
        after = _engines(launcher)
        seen |= {p.pid for p in after.values()}
        assert after["engine-0"].pid == survivor
        assert after["engine-1"].pid != engines["engine-1"].pid
        log = err.read_text(errors="replace")
        assert "the engine-0 exited" not in log and "the gateway exited" not in log
        assert _chat(url, name) == name
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        for pid in seen:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
    assert code == 0
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in seen
    )
