"""A bare engine stops its background C++ kernel build when it exits: no compiler
outlives it (a fresh TORCH_EXTENSIONS_DIR makes the build run)."""

from __future__ import annotations

import signal

import psutil
import pytest
from rel_procs import Engine, wait_until


def running(pids: list[int]) -> list[int]:
    """Those of `pids` that still run (a killed grandchild may linger as a zombie)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.parametrize("when", ["loading", "serving"])
def test_sigterm_stops_the_kernel_build(tiny, rel_dir, tmp_path, monkeypatch, when):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    engine = Engine(tiny, f"ipc://{rel_dir}/exit-{when}.ipc")
    try:
        if when == "serving":
            engine.wait_ready()
        proc = psutil.Process(engine.popen.pid)

        def builders() -> list[psutil.Process]:
            try:
                return proc.children(recursive=True)
            except psutil.NoSuchProcess:
                return []

        started = wait_until(builders, 60, interval=0.05)
        assert started, f"no kernel build started under the engine:\n{engine.output}"
        pids = [p.pid for p in started]
        engine.popen.send_signal(signal.SIGTERM)
        code = engine.wait_exit(20)
        assert code in (0, 128 + signal.SIGTERM), engine.output
        assert not running(pids), f"left running after the engine exited: {running(pids)}"
    finally:
        engine.stop()
