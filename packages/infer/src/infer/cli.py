"""Command line of `infer`: `serve`, `chat`, `bench` and `keys`.

Bad arguments end the program with exit status 2 and one line on stderr.
`infer bench` is provided by `infer.bench.cli`; if that cannot be imported
the rest of the command line still works.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path
from typing import NoReturn

from . import __version__, serve_options


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: 'PROG: error: WHY (see PROG --help)'."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bench_module() -> tuple[types.ModuleType | None, str]:
    try:
        from .bench import cli as bench_cli
    except Exception as exc:  # a missing or broken bench must not break serve/chat
        return None, f"{type(exc).__name__}: {exc}"
    if not (hasattr(bench_cli, "add_arguments") and hasattr(bench_cli, "run")):
        return None, "infer.bench.cli has no add_arguments/run"
    return bench_cli, ""


def add_chat_arguments(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    """Declare the options of `infer chat` on `parser`."""
    parser.add_argument(
        "--url",
        default=env.get("INFER_URL", "http://127.0.0.1:8000"),
        help="server base URL, with or without /v1 (env INFER_URL; default http://127.0.0.1:8000)",
    )
    parser.add_argument("--model", default=None, help="model name (default: the server's first)")
    parser.add_argument(
        "--api-key", default=env.get("API_KEY") or None, help="Bearer key (env API_KEY)"
    )
    parser.add_argument("--system", default=None, help="system prompt")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature")
    parser.add_argument("--max-tokens", type=int, default=None, help="most tokens per answer")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per request (default 120)"
    )
    parser.add_argument(
        "--tools",
        type=_tools_file,
        default=None,
        metavar="FILE",
        help="JSON file with an array of OpenAI tools to offer the model; its calls are shown "
        "and /result TEXT answers them",
    )


def _tools_file(path: str) -> list:
    """The tools array of a JSON file (argparse type)."""
    try:
        tools = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read tools from {path}: {exc}") from None
    if not isinstance(tools, list):
        raise argparse.ArgumentTypeError(f"{path} must hold a JSON array of tools")
    return tools


def write_keys(directory: Path, name: str) -> int:
    """`infer keys DIR`: write one key pair; 1 with one line when it cannot."""
    from infer_protocol.curve import write_keypair

    if not name or "/" in name or name.startswith("."):
        sys.stderr.write(f"infer keys: error: --name must be a plain file name, got {name!r}\n")
        return 2
    try:
        public, secret = write_keypair(directory, name)
    except OSError as exc:
        sys.stderr.write(f"infer keys: error: {exc}\n")
        return 1
    sys.stdout.write(
        f"wrote {public} (public key: copy it to the other side)\n"
        f"wrote {secret} (secret key, mode 0600: keep it on this machine)\n"
    )
    return 0


def build_parser(with_bench: bool = True) -> tuple[Parser, types.ModuleType | None, str]:
    """The parser, the bench module (or None) and why it is missing.

    The bench module (it imports matplotlib) is only loaded when `with_bench`.
    """
    parser = Parser(
        prog="infer",
        description="infer: an OpenAI-compatible LLM server. "
        "Start with `infer serve`, then open the printed URL or run `infer chat`.",
    )
    parser.add_argument("--version", action="version", version=f"infer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve_parser = commands.add_parser(
        "serve",
        help="run the engine and the HTTP server (one command, default model)",
        description="Start infer-scheduler (the engine) and infer-server (the OpenAI-"
        "compatible HTTP gateway) on a private ipc socket, wait until ready, print the "
        "URL. Ctrl-C or SIGTERM stops both.",
    )
    serve_options.add_arguments(serve_parser, dict(os.environ))

    chat_parser = commands.add_parser(
        "chat",
        help="chat with a running server in this terminal",
        description="A terminal chat against a running infer (or any OpenAI-compatible) "
        "server. Answers stream as they are generated; /reset forgets the conversation, "
        "/quit leaves.",
    )
    add_chat_arguments(chat_parser, dict(os.environ))

    keys_parser = commands.add_parser(
        "keys",
        help="write a CurveZMQ key pair for an engine or a gateway on another machine",
        description="Write NAME.key (the public key, for the other side) and NAME.key_secret "
        "(the secret key, mode 0600, stays here) into DIR. An engine takes its .key_secret "
        "with --curve-secret-key and the gateways' .key files in --curve-clients DIR; a "
        "gateway takes its .key_secret and the engine's .key (--curve-server-key).",
    )
    keys_parser.add_argument("dir", metavar="DIR", help="directory to write into (created 0700)")
    keys_parser.add_argument(
        "--name", default="infer", help="file name stem, e.g. engine or gateway (default infer)"
    )

    bench_cli, why = _bench_module() if with_bench else (None, "not loaded")
    bench_parser = commands.add_parser(
        "bench",
        help="streaming load generator for any OpenAI-compatible URL",
        description="Measure TTFT, inter-token latency, end-to-end latency and throughput.",
    )
    if bench_cli is not None:
        bench_cli.add_arguments(bench_parser)
    return parser, bench_cli, why


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, bench_cli, why = build_parser(with_bench="bench" in argv)
    args = parser.parse_args(argv)
    if args.command == "serve":
        from . import serve

        return serve.run(args)
    if args.command == "chat":
        from . import chat

        return chat.run(args)
    if args.command == "keys":
        return write_keys(Path(args.dir), args.name)
    if args.command == "bench":
        if bench_cli is None:
            sys.stderr.write(f"infer bench: error: not available ({why})\n")
            return 1
        return int(bench_cli.run(args))
    parser.error("choose a command: serve, chat, bench or keys")


if __name__ == "__main__":
    sys.exit(main())
