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

from .children import Child, console_command, engine_env, gateway_env, stop_in_order
from .engines import EngineSlot, cpu_count, plan_engines, visible_gpus
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
        try:
            slots = plan_engines(
                self.args.engines,
                workdir,
                self.args.device,
                self.args.threads,
                visible_gpus(os.environ) if self.args.engines > 1 else [],
                cpu_count(),
            )
        except ValueError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            return self._fail(str(exc))
        env = {k: v for k, v in os.environ.items() if k != "API_KEY"}
        env["PYTHONUNBUFFERED"] = "1"
        engines = [self._engine(slot, env) for slot in slots]
        gateway = Child(
            "gateway",
            console_command("infer-server", "infer_server.cli")
            + gateway_args(self.args, [slot.endpoint for slot in slots]),
            self.log,
            gateway_env(env, self.args.api_key),
            hide=is_probe_log,
        )
        self._children = [gateway, *engines]
        sockets = {engine.name: slot.socket for engine, slot in zip(engines, slots, strict=True)}
        previous = self._install_signals()
        try:
            for child in (*engines, gateway):
                try:
                    child.start()
                except OSError as exc:
                    return self._fail(f"cannot start the {child.name} ({child.argv[0]}): {exc}")
            pids = ", ".join(f"{e.name} pid {e.pid}" for e in engines)
            self._say(
                f"loading {self.args.model} ({pids}); HTTP server on {self.url} (pid {gateway.pid})"
            )
            with httpx.Client(timeout=2.0) as client:
                failed = self._wait_ready(client, engines, gateway)
                if failed is not None:
                    return failed
                if self._stop.is_set():
                    return 0
                model = first_model(client, self.url, self.args.api_key) or self.args.model
                self.out.write(banner(self.url, model, self.args.api_key))
                self.out.flush()
                return self._supervise(client, engines, gateway, sockets)
        finally:
            stop_in_order([[gateway], engines], self.args.shutdown_timeout + ENGINE_STOP_S)
            shutil.rmtree(workdir, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]

    def _engine(self, slot: EngineSlot, env: dict[str, str]) -> Child:
        """The engine child of one slot (its own socket, threads and GPU)."""
        args = argparse.Namespace(**{**vars(self.args), "threads": slot.threads})
        return Child(
            slot.name,
            console_command("infer-scheduler", "infer_scheduler.cli")
            + engine_args(args, slot.endpoint),
            self.log,
            engine_env({**env, **slot.env}),
            marker="engine ready",
        )

    def _wait_ready(self, client: httpx.Client, engines: list[Child], gateway: Child) -> int | None:
        """None once every engine is ready and /ready answers 200 (or on a stop signal);
        an exit code on failure."""
        deadline = time.monotonic() + self.args.ready_timeout
        while not self._stop.is_set():
            for child in (*engines, gateway):
                code = child.poll()
                if code is not None:
                    what = "the HTTP server" if child is gateway else f"the {child.name}"
                    return self._fail(
                        f"{what} exited during startup ({describe_exit(code)}): {child.reason()}"
                    )
            if all(e.marker_seen for e in engines) and is_ready(client, self.url):
                return None
            if time.monotonic() > deadline:
                return self._fail(
                    f"the engine was not ready within {self.args.ready_timeout:g} s "
                    "(raise --ready-timeout for large models)"
                )
            self._stop.wait(0.25)
        return None

    def _supervise(
        self, client: httpx.Client, engines: list[Child], gateway: Child, sockets: dict[str, Path]
    ) -> int:
        """Restart children that die, each on its own, until a stop signal; 0 then, 1 on a
        crash loop. The others keep running meanwhile."""
        quick_exits = {child.name: 0 for child in (*engines, gateway)}
        restarting: set[str] = set()
        while not self._stop.wait(0.25):
            for child in (*engines, gateway):
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
                if child.name in sockets:
                    sockets[child.name].unlink(missing_ok=True)
                    restarting.add(child.name)
                try:
                    child.start()
                except OSError as exc:
                    return self._fail(f"cannot restart the {child.name}: {exc}")
                self._say(f"restarted the {child.name} (pid {child.pid})")
            for engine in engines:
                if engine.name in restarting and engine.marker_seen and is_ready(client, self.url):
                    restarting.discard(engine.name)
                    self._say(f"the {engine.name} is ready again")
        return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of `infer serve`."""
    return Launcher(args, sys.stdout, sys.stderr).run()
