"""Child processes of `infer serve`: start, forward output, stop.

Invariants: a child runs in its own session (so a terminal's Ctrl-C reaches
only the launcher, which then stops the children in order), and on Linux it
receives SIGTERM if the launcher dies without cleaning up. Each output line
of a child is forwarded, prefixed with the child's name, and the last lines
are kept to explain a failure in one line.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

_PR_SET_PDEATHSIG = 1
# "2026-01-02 03:04:05,678 ERROR infer_scheduler: " (the logging format of both children)
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:.,]+ +[A-Z]+ +[\w.]+: ")


def console_command(script: str, module: str) -> list[str]:
    """How to run a console script of this environment (works inside `uv run`).

    Prefers the script installed next to sys.executable; falls back to
    running `module.main()` with the same interpreter.
    """
    candidate = Path(sys.executable).parent / script
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return [str(candidate)]
    code = f"import sys; from {module} import main; sys.exit(main())"
    return [sys.executable, "-c", code]


def engine_env(env: dict[str, str]) -> dict[str, str]:
    """The engine's environment: OpenMP threads spin briefly, then sleep, while idle.

    The engine shares the machine with the gateway; OpenMP workers that spin
    for long (the default) make CPU matrix products ~20x slower as soon as
    another process wants a core, and ones that sleep at once (PASSIVE alone)
    make a batch-1 decode step ~2x slower. A value set by the user wins.
    """
    return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000", **env}


def gateway_env(env: dict[str, str], api_key: str | None) -> dict[str, str]:
    """The gateway's environment: the API key travels as API_KEY, never on a command line
    (where every local user can read it in `ps`)."""
    out = {k: v for k, v in env.items() if k != "API_KEY"}
    if api_key:
        out["API_KEY"] = api_key
    return out


def _parent_death_hook() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGTERM the child when we die."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    term = int(signal.SIGTERM)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)

    return hook


class Child:
    """One named child process with forwarded, remembered output."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: TextIO,
        env: dict[str, str] | None = None,
        tail_lines: int = 40,
        hide: Callable[[str], bool] | None = None,
        marker: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._log = log
        self._env = env
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._hide = hide
        self._marker = marker
        self.marker_seen = False  # `marker` appeared in the output since the last start
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start (or restart) the process. Call from the main thread only."""
        self._tail.clear()
        self.marker_seen = False
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,
            preexec_fn=_parent_death_hook(),
        )
        self.started_at = time.monotonic()
        self._pump = threading.Thread(
            target=self._forward, args=(self._proc,), name=f"{self.name}-output", daemon=True
        )
        self._pump.start()

    def _forward(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self._tail.append(line)
            if self._marker is not None and self._marker in line:
                self.marker_seen = True
            if self._hide is not None and self._hide(line):
                continue
            try:
                self._log.write(f"[{self.name}] {line}\n")
                self._log.flush()
            except (OSError, ValueError):
                pass
        proc.stdout.close()

    def poll(self) -> int | None:
        """Exit code, or None while running (or never started)."""
        return self._proc.poll() if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def reason(self) -> str:
        """The child's last meaningful output line (after it exited)."""
        if self._pump is not None:
            self._pump.join(timeout=2.0)
        for line in reversed(self._tail):
            text = _LOG_PREFIX.sub("", line.strip())
            if text and not text.startswith(("File ", "^", "~", "Traceback")):
                return text
        return "no output"

    def signal(self, sig: int) -> None:
        """Send `sig` if the process is still running."""
        if self.running():
            assert self._proc is not None
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` seconds; the exit code or None."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        self.wait(5.0)

    def kill_leftovers(self) -> int:
        """SIGKILL what the exited child left running in its session (e.g. compilers).

        The child leads its own session, so its descendants keep its session
        id even after they are orphaned. Linux only (reads /proc); returns
        how many processes were killed.
        """
        if self._proc is None or self.running() or not os.path.isdir("/proc"):
            return 0
        session, killed = self._proc.pid, 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == session:
                    os.kill(int(entry), signal.SIGKILL)
                    killed += 1
        return killed


def stop_in_order(stages: Sequence[Sequence[Child]], grace: float, min_share: float = 1.5) -> None:
    """Stop stages of children one after the other, all within `grace` seconds.

    Every child of a stage gets SIGTERM at once and may finish its work (a
    gateway drains in-flight requests while the engines behind it still
    run); each later stage is left at least `min_share` seconds. Whatever
    still runs at its stage's deadline is killed.
    """
    deadline = time.monotonic() + grace
    for position, stage in enumerate(stages):
        reserve = min_share * (len(stages) - position - 1)
        for child in stage:
            child.signal(signal.SIGTERM)
        for child in stage:
            child.wait(deadline - reserve - time.monotonic())
        for child in stage:
            if child.running():
                child.kill()
            child.kill_leftovers()
