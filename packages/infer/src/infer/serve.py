"""`infer serve`: run the engine and the gateway as children on a private ipc socket.

Invariants:
- the ipc socket lives in a private (0700) temporary directory that is
  removed on exit, together with anything left in it;
- when `run` returns, no child process is left running (SIGTERM, then
  SIGKILL after a grace period);
- a child that dies after startup is restarted (with backoff) while the
  other keeps serving; one that dies during startup ends the launcher with
  a one-line reason and exit code 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

import httpx

from .children import Child, console_command, stop_in_order
from .network import base_url, first_model, is_ready, port_problem
from .serve_options import DEFAULT_MODEL, engine_args, gateway_args

ENGINE_STOP_S = 3.0  # after the gateway's drain (--shutdown-timeout), the engine's share
QUICK_EXIT_S = 30.0
MAX_QUICK_RESTARTS = 5
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def describe_exit(code: int | None) -> str:
    """'exit code 1' or 'killed by SIGKILL'."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def banner(url: str, model: str, api_key: str | None) -> str:
    """What the user sees once the server is ready."""
    auth = f" \\\n    -H 'Authorization: Bearer {api_key}'" if api_key else ""
    body = f'{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'
    return (
        f"infer is ready: {url}  (model {model}; web UI at {url}/)\n"
        "Try it:\n"
        f"  curl {url}/v1/chat/completions \\\n"
        f"    -H 'Content-Type: application/json'{auth} \\\n"
        f"    -d '{body}'\n"
        f"or chat in this terminal: uv run infer chat --url {url}\n"
        "Press Ctrl-C to stop.\n"
    )


def preflight(args: argparse.Namespace) -> str | None:
    """A reason not to start at all, found without starting anything."""
    model = args.model
    looks_like_path = os.sep in model or model.startswith(".") or model.endswith(".gguf")
    if model != DEFAULT_MODEL and looks_like_path and not Path(model).exists():
        return (
            f"model not found: {model} (use '{DEFAULT_MODEL}', a .gguf file or a model directory)"
        )
    if args.chat_template and not Path(args.chat_template).is_file():
        return f"chat template file not found: {args.chat_template}"
    return port_problem(args.host, args.port)


def is_probe_log(line: str) -> bool:
    """An access-log line of a /ready or /health probe (the launcher polls /ready)."""
    return "infer_server.access" in line and (" GET /ready " in line or " GET /health " in line)


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


def private_dir() -> Path:
    """A fresh 0700 directory short enough for an ipc socket path."""
    path = Path(tempfile.mkdtemp(prefix="infer-"))
    if len(str(path)) > 80:  # sun_path holds ~107 bytes
        shutil.rmtree(path, ignore_errors=True)
        path = Path(tempfile.mkdtemp(prefix="infer-", dir="/tmp"))
    return path


class Launcher:
    """Starts, watches, restarts and stops the two children of `infer serve`."""

    def __init__(self, args: argparse.Namespace, out: TextIO, log: TextIO) -> None:
        self.args = args
        self.out = out
        self.log = log
        self.url = base_url(args.host, args.port)
        self._stop = threading.Event()
        self._children: list[Child] = []

    # -- messages
    def _say(self, text: str) -> None:
        self.log.write(f"[infer] {text}\n")
        self.log.flush()

    def _fail(self, reason: str) -> int:
        self.log.write(f"infer serve: error: {reason}\n")
        self.log.flush()
        return 1

    # -- signals
    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stop.is_set():  # second signal: do not wait any longer
            for child in self._children:
                child.signal(signal.SIGKILL)
        self._stop.set()

    def _install_signals(self) -> dict[int, object]:
        previous = {}
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    # -- main
    def run(self) -> int:
        problem = preflight(self.args)
        if problem:
            return self._fail(problem)
        workdir = private_dir()
        endpoint = f"ipc://{workdir / 'engine.ipc'}"
        env = {k: v for k, v in os.environ.items() if k != "API_KEY"}
        env["PYTHONUNBUFFERED"] = "1"
        engine = Child(
            "engine",
            console_command("infer-scheduler", "infer_scheduler.cli")
            + engine_args(self.args, endpoint),
            self.log,
            engine_env(env),
            marker="engine ready",
        )
        gateway = Child(
            "gateway",
            console_command("infer-server", "infer_server.cli") + gateway_args(self.args, endpoint),
            self.log,
            gateway_env(env, self.args.api_key),
            hide=is_probe_log,
        )
        self._children = [gateway, engine]
        previous = self._install_signals()
        try:
            for child in (engine, gateway):
                try:
                    child.start()
                except OSError as exc:
                    return self._fail(f"cannot start the {child.name} ({child.argv[0]}): {exc}")
            self._say(
                f"loading {self.args.model} (engine pid {engine.pid}); "
                f"HTTP server on {self.url} (pid {gateway.pid})"
            )
            with httpx.Client(timeout=2.0) as client:
                failed = self._wait_ready(client, engine, gateway)
                if failed is not None:
                    return failed
                if self._stop.is_set():
                    return 0
                model = first_model(client, self.url, self.args.api_key) or self.args.model
                self.out.write(banner(self.url, model, self.args.api_key))
                self.out.flush()
                return self._supervise(client, engine, gateway, workdir / "engine.ipc")
        finally:
            stop_in_order(self._children, self.args.shutdown_timeout + ENGINE_STOP_S)
            shutil.rmtree(workdir, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]

    def _wait_ready(self, client: httpx.Client, engine: Child, gateway: Child) -> int | None:
        """None once /ready answers 200 (or on a stop signal); an exit code on failure."""
        deadline = time.monotonic() + self.args.ready_timeout
        while not self._stop.is_set():
            for child, what in ((engine, "the engine"), (gateway, "the HTTP server")):
                code = child.poll()
                if code is not None:
                    return self._fail(
                        f"{what} exited during startup ({describe_exit(code)}): {child.reason()}"
                    )
            if is_ready(client, self.url):
                return None
            if time.monotonic() > deadline:
                return self._fail(
                    f"the engine was not ready within {self.args.ready_timeout:g} s "
                    "(raise --ready-timeout for large models)"
                )
            self._stop.wait(0.25)
        return None

    def _supervise(
        self, client: httpx.Client, engine: Child, gateway: Child, socket_file: Path
    ) -> int:
        """Restart children that die until a stop signal; 0 then, 1 on a crash loop."""
        quick_exits = {engine.name: 0, gateway.name: 0}
        waiting_for_engine = False
        while not self._stop.wait(0.25):
            for child in (engine, gateway):
                code = child.poll()
                if code is None:
                    continue
                child.kill_leftovers()
                lived = time.monotonic() - child.started_at
                quick_exits[child.name] = quick_exits[child.name] + 1 if lived < QUICK_EXIT_S else 1
                count = quick_exits[child.name]
                if count > MAX_QUICK_RESTARTS:
                    return self._fail(
                        f"the {child.name} keeps exiting ({describe_exit(code)}): {child.reason()}"
                    )
                delay = min(0.5 * 2 ** (count - 1), 10.0)
                self._say(
                    f"the {child.name} exited ({describe_exit(code)}; last output: "
                    f"{child.reason()}); restarting in {delay:g} s"
                )
                if self._stop.wait(delay):
                    return 0
                if child is engine:
                    socket_file.unlink(missing_ok=True)
                    waiting_for_engine = True
                try:
                    child.start()
                except OSError as exc:
                    return self._fail(f"cannot restart the {child.name}: {exc}")
                self._say(f"restarted the {child.name} (pid {child.pid})")
            if waiting_for_engine and engine.marker_seen and is_ready(client, self.url):
                waiting_for_engine = False
                self._say("the engine is ready again")
        return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of `infer serve`."""
    return Launcher(args, sys.stdout, sys.stderr).run()
